"""An order's write whose connection is lost at COMMIT (`POST /orders` with an
Idempotency-Key) is in doubt: the server may have committed it. It answers 503 and closes
no trade: the client's retry with its key is answered the order if it was committed, whose
code must still be payable; if it was not, the trade, shown to no one, expires at the
order's expiry."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest
from pymysql.constants import CR

from app.db.engine import get_engine
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_order_write_conflicts import trades
from tests.payments.test_orders import orders_of
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, new_plan

Commit = Callable[[pymysql.connections.Connection], None]


def kill(connection: pymysql.connections.Connection) -> None:
    """The server ends the connection (a failover, a network cut), as seen from another."""
    with get_engine().connect() as killer:
        killer.exec_driver_sql(f"KILL CONNECTION {connection.thread_id()}")


def answer_lost(commit: Commit) -> Commit:
    """The server commits, and the connection dies before its answer is read: the driver
    closes its socket and raises as it does for a read that finds the connection gone."""

    def lost(connection: pymysql.connections.Connection) -> None:
        commit(connection)
        kill(connection)
        connection._force_close()
        raise pymysql.err.OperationalError(
            CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
        )

    return lost


def commit_lost(commit: Commit) -> Commit:
    """The connection dies before COMMIT reaches the server: nothing is committed."""

    def lost(connection: pymysql.connections.Connection) -> None:
        kill(connection)
        commit(connection)

    return lost


def ordered_with_the_write_lost(
    wechatpay: FakeWechatPay,
    monkeypatch: pytest.MonkeyPatch,
    buyer: Buyer,
    plan: str,
    losing: Callable[[Commit], Commit],
) -> None:
    """The order keyed `buy-1`, its write's commit lost as `losing` makes it: 503."""
    commit = pymysql.connections.Connection.commit
    lose = losing(commit)
    lost: list[bool] = []

    def order_commit(connection: pymysql.connections.Connection) -> None:
        # The first commit once the trade is made is the order's write.
        if wechatpay.sim.trades and not lost:
            lost.append(True)
            lose(connection)
        else:
            commit(connection)

    monkeypatch.setattr(pymysql.connections.Connection, "commit", order_commit)
    try:
        refused = buyer.order(plan, "wechat", key="buy-1")
    finally:
        monkeypatch.undo()
    assert lost
    assert refused.status == 503, refused.body
    assert refused.json()["code"] == "SERVICE_UNAVAILABLE"


def test_an_order_committed_whose_answer_was_lost_keeps_its_trade_for_the_retry(
    wechatpay: FakeWechatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer = Buyer()
    plan = new_plan()
    with capture_logs() as logs:
        ordered_with_the_write_lost(wechatpay, monkeypatch, buyer, plan, answer_lost)
    [lost] = logs.where(message="db connection lost")
    assert lost["at"] == "commit"
    assert trades(wechatpay) == (1, 0)  # nothing closed: the order may stand
    assert orders_of(buyer.user_id) == 1  # and it does

    again = buyer.order(plan, "wechat", key="buy-1")  # the client's retry of its 503
    assert again.status == 201, again.body
    order = again.json()
    assert wechatpay.sim.trades[order["id"]].state == "NOTPAY"  # payable
    assert trades(wechatpay) == (1, 0) and orders_of(buyer.user_id) == 1


def test_an_order_whose_commit_never_reached_the_server_leaves_its_trade_to_expire(
    wechatpay: FakeWechatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing tells this loss from the one above: the trade is left open too, shown to no
    one, and the provider expires it at the order's expiry."""
    buyer = Buyer()
    plan = new_plan()
    ordered_with_the_write_lost(wechatpay, monkeypatch, buyer, plan, commit_lost)
    assert orders_of(buyer.user_id) == 0
    assert trades(wechatpay) == (1, 0)
    [unshown] = wechatpay.sim.trades.values()
    assert unshown.state == "NOTPAY"
    assert unshown.time_expire is not None  # the provider's own end to it

    again = buyer.order(plan, "wechat", key="buy-1")  # the retry makes the order anew
    assert again.status == 201, again.body
    assert wechatpay.sim.trades[again.json()["id"]].state == "NOTPAY"
    assert trades(wechatpay) == (2, 0) and orders_of(buyer.user_id) == 1
