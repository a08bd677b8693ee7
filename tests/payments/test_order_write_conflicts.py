"""A lock conflict in an order's write (`POST /orders` with an Idempotency-Key) writes the
order again, alone: the count of ORDERS_PER_USER_PER_HOUR is taken once and the provider
asked for one trade; a conflict no try resolved is a 503, and closes that trade once when the
close fits in what is left of the invocation. A lock wait timeout after the key's claim
writes again with the key still claimed; a deadlock, which the server rolls back whole,
claims it again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymysql
import pytest
from pymysql.constants import ER
from sqlalchemy import Insert
from sqlalchemy.exc import OperationalError

from app.clock import utcnow
from app.db.conflicts import lock_conflict_code
from app.db.tables import idempotency_keys
from app.idempotency import request_hash
from app.payments import orders
from app.redis_client import get_redis
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_orders import orders_of
from tests.support.function_url import Reply, context, event, reply_of
from tests.support.functions import handler
from tests.support.lock_waits import RowLock, held_past_one_wait
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, new_plan
from tests.support.settings import app_engine_under


@pytest.fixture
def one_second_waits() -> Iterator[None]:
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        yield


def key_in_flight(buyer: Buyer, plan: str, key: str, answer: Any = None) -> Insert:
    """The order key as another request for the same plan holds it while its write is under
    way, its `answer` already recorded."""
    now = utcnow()
    return idempotency_keys.insert().values(
        user_id=buyer.user_id,
        scope="orders",
        key=key,
        request_hash=request_hash({"plan_id": plan, "channel": "wechat"}),
        response=answer or {},
        created_at=now,
        expires_at=now + timedelta(hours=24),
    )


def trades(wechatpay: FakeWechatPay) -> tuple[int, int]:
    """The trades our side asked WeChat Pay to create, and to close."""
    paths = [r.path for r in wechatpay.requests if r.method == "POST"]
    created = sum(path == "/v3/pay/transactions/native" for path in paths)
    return created, sum(path.endswith("/close") for path in paths)


def counted(buyer: Buyer) -> int:
    return int(get_redis().get(f"orders:rate:{buyer.user_id}") or 0)


def order_sent_while_held(buyer: Buyer, plan: str, theirs: Any = None) -> Reply:
    """The order, keyed `buy-1`, sent while another request holds that key past one lock
    wait; then that request rolls back, or with `theirs` (its answer) commits."""
    replies: list[Reply] = []
    sending = threading.Thread(
        target=lambda: replies.append(buyer.order(plan, "wechat", key="buy-1"))
    )
    holder = key_in_flight(buyer, plan, "buy-1", theirs)
    held_past_one_wait(holder, sending.start, commit=theirs is not None)
    sending.join(20)
    [reply] = replies
    return reply


def test_an_order_whose_write_meets_a_lock_writes_again_with_its_one_trade(
    one_second_waits: None, wechatpay: FakeWechatPay
) -> None:
    buyer = Buyer()
    created = order_sent_while_held(buyer, new_plan())

    assert created.status == 201, created.body
    assert trades(wechatpay) == (1, 0)
    assert counted(buyer) == 1
    order = created.json()
    assert wechatpay.sim.trades[order["id"]].state == "NOTPAY"
    assert orders_of(buyer.user_id) == 1 and buyer.get(order["id"]).json() == order


def test_a_key_committed_while_the_write_waited_is_replayed_and_the_trade_closed(
    one_second_waits: None, wechatpay: FakeWechatPay
) -> None:
    """The retry's claim finds the key committed: the other request's answer is replayed,
    and the trade made for this one, which has no order, is closed."""
    buyer = Buyer()
    plan = new_plan()
    theirs = buyer.order(plan, "wechat").json()  # the answer the other request recorded
    replayed = order_sent_while_held(buyer, plan, theirs)

    assert replayed.status == 201, replayed.body
    assert replayed.json() == theirs
    assert trades(wechatpay) == (2, 1)
    assert counted(buyer) == 2
    assert wechatpay.sim.trades[theirs["id"]].state == "NOTPAY"  # the closed one was ours
    assert orders_of(buyer.user_id) == 1


def test_a_conflict_no_try_resolved_is_503_and_leaves_the_trade_when_no_close_fits(
    one_second_waits: None, wechatpay: FakeWechatPay
) -> None:
    """A 3.5 s invocation: after the first wait (1 s) another wait and the answer fit (2 s),
    after the second they do not, nor does a close that may wait for WeChat Pay's 5 s: the
    trade, shown to no one, is left to expire."""
    buyer = Buyer()
    plan = new_plan()
    sent = event(
        "POST",
        "/orders",
        body={"plan_id": plan, "channel": "wechat"},
        headers={"Idempotency-Key": "buy-1"},
        token=buyer.token,
    )
    lock = RowLock()
    lock.take(key_in_flight(buyer, plan, "buy-1"))
    try:
        with capture_logs() as logs:
            invocation = {**context("orders"), "time_limit_in_ms": 3500}
            refused = reply_of(handler("orders")(sent, invocation))
    finally:
        lock.release()

    assert refused.status == 503, refused.body
    assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
    assert refused.header("Retry-After") == "1"
    assert trades(wechatpay) == (1, 0)
    [left] = logs.where(message="an unwritten order's trade left to expire")
    [(order_id, unshown)] = wechatpay.sim.trades.items()
    assert left["level"] == "warning" and left["order_id"] == order_id
    assert unshown.state == "NOTPAY" and unshown.time_expire is not None
    assert counted(buyer) == 1
    assert orders_of(buyer.user_id) == 0
    again = buyer.order(plan, "wechat", key="buy-1")  # the lock gone, as sent again
    assert again.status == 201, again.body
    assert counted(buyer) == 2 and trades(wechatpay) == (2, 0)


def test_outside_an_invocation_a_conflict_no_try_resolved_closes_the_trade(
    wechatpay: FakeWechatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Called with no invocation's end known (`time_left` None), a write whose every COMMIT
    the server refuses with a deadlock is tried five times, and its trade, no time limit
    standing in the way, is closed."""
    buyer = Buyer()
    plan = new_plan()
    commit = pymysql.connections.Connection.commit
    refused: list[bool] = []

    def refuse_the_write(connection: pymysql.connections.Connection) -> None:
        if not wechatpay.sim.trades:  # the plan's read, the key's lookup
            return commit(connection)
        refused.append(True)
        connection.rollback()
        raise pymysql.err.OperationalError(ER.LOCK_DEADLOCK, "Deadlock found")

    monkeypatch.setattr(pymysql.connections.Connection, "commit", refuse_the_write)
    try:
        with pytest.raises(OperationalError) as caught:
            orders.create(buyer.user_id, plan, "wechat", key="buy-1")
    finally:
        monkeypatch.undo()
    assert lock_conflict_code(caught.value) == ER.LOCK_DEADLOCK
    assert len(refused) == 5  # retry_conflicts' attempts
    assert trades(wechatpay) == (1, 1)
    [(_, closed)] = wechatpay.sim.trades.items()
    assert closed.state == "CLOSED"
    assert orders_of(buyer.user_id) == 0


@pytest.mark.parametrize(("code", "claims"), [(ER.LOCK_WAIT_TIMEOUT, 1), (ER.LOCK_DEADLOCK, 2)])
def test_a_conflict_after_the_claim_writes_the_order_again_with_its_key(
    code: int, claims: int, wechatpay: FakeWechatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order's first INSERT ends in a lock conflict. A lock wait timeout undoes that
    statement alone: the write goes on from its savepoint, in the transaction that claimed
    the key, claimed once. A deadlock ends the whole transaction on the server, the
    savepoint with it: the write runs again whole, the key claimed again, never in a
    transaction that has lost its claim. Either way one order, and its key replays it."""
    buyer = Buyer()
    plan = new_plan()
    execute = pymysql.cursors.Cursor.execute
    sent: list[str] = []

    def conflict_once(cursor: pymysql.cursors.Cursor, query: str, args: Any = None) -> Any:
        sent.append(query)
        if query.startswith("INSERT INTO orders") and sent.count(query) == 1:
            if code == ER.LOCK_DEADLOCK:
                cursor.connection.rollback()  # as the server rolls back a deadlock's victim
            raise pymysql.err.OperationalError(code, "lock conflict")
        return execute(cursor, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", conflict_once)
    try:
        created = buyer.order(plan, "wechat", key="buy-1")
    finally:
        monkeypatch.undo()

    assert created.status == 201, created.body
    inserts = [q for q in sent if q.startswith("INSERT INTO orders")]
    assert len(inserts) == 2
    assert sum(q.startswith("INSERT IGNORE INTO idempotency_keys") for q in sent) == claims
    assert orders_of(buyer.user_id) == 1 and trades(wechatpay) == (1, 0)
    replayed = buyer.order(plan, "wechat", key="buy-1")
    assert replayed.status == 201 and replayed.json() == created.json()
