"""The notify webhooks: a genuine notification pays its order once (membership and quota in
one transaction), however often and however concurrently it arrives; every forged or
mismatched variant is rejected and changes nothing; non-paid states are acknowledged."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from app.db.tables import orders, quota_ledger, users
from app.db.transaction import transaction
from app.payments.settlement import MEMBERSHIP_MAX
from app.quota import grant
from app.quota.service import QUOTA_MAX
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.function_url import Reply
from tests.support.logs import capture_logs
from tests.support.payments import (
    Buyer,
    alipay_notify,
    new_plan,
    order_row,
    wechat_notify,
)
from tests.support.quota import counters

OK = {"code": "SUCCESS", "message": "OK"}


def ledger(order_id: str) -> list[tuple[str, int]]:
    """The order's ledger entries, as (kind, balance change)."""
    with transaction() as tx:
        rows = tx.execute(
            select(quota_ledger.c.kind, quota_ledger.c.balance_delta).where(
                quota_ledger.c.ref == f"order:{order_id}"
            )
        ).all()
    return [(row.kind, row.balance_delta) for row in rows]


def grants(order_id: str) -> int:
    return len(ledger(order_id))


def member_for_30_days(buyer: Buyer) -> bool:
    """Whether the buyer's membership ends 30 days from now (within a minute)."""
    expires, _ = buyer.membership()
    return abs(expires - (datetime.now(timezone.utc) + timedelta(days=30))).total_seconds() < 60


def redelivered_changes_nothing(buyer: Buyer, order_id: str, genuine: Any) -> bool:
    """The same WeChat Pay notification once more: acknowledged, and nothing changes."""
    before = state(buyer, order_id)
    again = wechat_notify(genuine.lower_headers, genuine.body)
    return (again.status, again.json()) == (200, OK) and state(buyer, order_id) == before


def state(buyer: Buyer, order_id: str) -> tuple[Any, ...]:
    """Everything a notification may change."""
    row = order_row(order_id)
    return (
        row["status"],
        row["paid_at"],
        counters(buyer.user_id),
        buyer.membership(),
        grants(order_id),
    )


def wechat_order(buyer: Buyer, plan: str) -> str:
    reply = buyer.order(plan, "wechat")
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def alipay_order(buyer: Buyer, plan: str) -> str:
    reply = buyer.order(plan, "alipay")
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def test_a_genuine_wechat_notification_sent_six_times_at_once_grants_once(
    wechatpay: FakeWechatPay,
) -> None:
    plan = new_plan(price_fen=2990, duration_days=30, quota=300)
    buyer = Buyer()
    order_id = wechat_order(buyer, plan)
    genuine = wechatpay.pay(order_id)
    replies: list[Reply] = []
    start = threading.Barrier(6)

    def deliver() -> None:
        start.wait()
        replies.append(wechat_notify(genuine.lower_headers, genuine.body))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(r.status, r.json()) for r in replies] == [(200, OK)] * 6
    row = order_row(order_id)
    assert row["status"] == "paid" and row["provider_trade_id"]
    assert counters(buyer.user_id) == (300, 0)
    assert grants(order_id) == 1
    assert buyer.membership()[1] == plan and member_for_30_days(buyer)
    me = buyer.me()
    assert me["membership"]["plan_id"] == plan and me["quota"] == {"balance": 300, "reserved": 0}
    assert buyer.get(order_id).json()["status"] == "paid"
    # and once more, a day later: acknowledged, nothing changes
    assert redelivered_changes_nothing(buyer, order_id, genuine)


def test_a_genuine_alipay_notification_sent_six_times_at_once_grants_once(
    alipay: FakeAlipay,
) -> None:
    plan = new_plan(price_fen=1990, quota=50)
    buyer = Buyer()
    order_id = alipay_order(buyer, plan)
    alipay.sim.scan(order_id)
    genuine = alipay.sim.pay(order_id)
    replies: list[Reply] = []
    start = threading.Barrier(6)

    def deliver() -> None:
        start.wait()
        replies.append(alipay_notify(genuine.body))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(r.status, r.body) for r in replies] == [(200, "success")] * 6
    assert (replies[0].header("content-type") or "").startswith("text/plain")
    assert order_row(order_id)["status"] == "paid"
    assert counters(buyer.user_id) == (50, 0) and grants(order_id) == 1


def test_membership_extends_from_the_later_of_now_and_its_expiry(
    wechatpay: FakeWechatPay,
) -> None:
    plan = new_plan(duration_days=30, quota=0)
    buyer = Buyer()
    for _ in range(2):
        order_id = wechat_order(buyer, plan)
        n = wechatpay.pay(order_id)
        assert wechat_notify(n.lower_headers, n.body).status == 200
    expires, _ = buyer.membership()
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(days=60))).total_seconds() < 60
    assert counters(buyer.user_id) == (0, 0)  # a plan of no quota grants none
    # a lapsed membership starts again from now
    with transaction() as tx:
        tx.execute(
            update(users)
            .where(users.c.id == buyer.user_id)
            .values(membership_expires_at=datetime.now(timezone.utc) - timedelta(days=400))
        )
    order_id = wechat_order(buyer, plan)
    n = wechatpay.pay(order_id)
    assert wechat_notify(n.lower_headers, n.body).status == 200
    assert member_for_30_days(buyer)


WECHAT_FORGERIES: dict[str, tuple[Callable[[FakeWechatPay, str], Any], int]] = {
    "tampered body": (lambda f, o: f.tampered(o), 401),
    "signed with another key": (lambda f, o: f.signed_with_other_key(o), 401),
    "another apiv3 key": (lambda f, o: f.other_apiv3_key(o), 401),
    "timestamp 6 minutes old": (lambda f, o: f.timestamp_off(o, -360), 400),
    "timestamp 6 minutes ahead": (lambda f, o: f.timestamp_off(o, 360), 400),
    "unknown serial": (lambda f, o: f.unknown_serial(o), 401),
    "another merchant": (lambda f, o: f.other_mchid(o), 400),
    "another app": (lambda f, o: f.other_appid(o), 400),
    "another amount": (lambda f, o: f.other_amount(o, 1), 400),
    "unknown order": (lambda f, o: f.unknown_order(), 400),
}


@pytest.mark.parametrize("case", list(WECHAT_FORGERIES))
def test_every_forged_wechat_notification_is_rejected_and_changes_nothing(
    wechatpay: FakeWechatPay, case: str
) -> None:
    forge, status = WECHAT_FORGERIES[case]
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=10))
    before = state(buyer, order_id)
    forged = forge(wechatpay, order_id)
    with capture_logs() as logs:
        reply = wechat_notify(forged.lower_headers, forged.body)
    assert reply.status == status, reply.body
    assert reply.json()["code"] == "FAIL" and reply.json()["message"]
    assert state(buyer, order_id) == before
    line = next(r for r in logs.lines if r["message"] == "payment notification")
    assert line["outcome"] == "rejected" and line["reason"]
    text = logs.text + reply.body
    for secret in (forged.headers["Wechatpay-Signature"], wechatpay.sim.apiv3_key):
        assert secret not in text


ALIPAY_FORGERIES: dict[str, Callable[[FakeAlipay, str], Any]] = {
    "tampered": lambda f, o: f.tampered(o),
    "another key": lambda f, o: f.wrong_key(o),
    "another app": lambda f, o: f.wrong_app_id(o),
    "another seller": lambda f, o: f.wrong_seller_id(o),
    "another amount": lambda f, o: f.wrong_amount(o),
    "unknown order": lambda f, o: f.unknown_order(o),
    "unsigned": lambda f, o: f.unsigned(o),
}


@pytest.mark.parametrize("case", list(ALIPAY_FORGERIES))
def test_every_forged_alipay_notification_is_rejected_and_changes_nothing(
    alipay: FakeAlipay, case: str
) -> None:
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    before = state(buyer, order_id)
    forged = ALIPAY_FORGERIES[case](alipay, order_id)
    reply = alipay_notify(forged.body)
    assert (reply.status, reply.body) == (200, "fail")
    assert state(buyer, order_id) == before


def test_a_notification_for_the_other_channels_order_is_rejected(
    wechatpay: FakeWechatPay, alipay: FakeAlipay
) -> None:
    buyer = Buyer()
    plan = new_plan()
    order_id = alipay_order(buyer, plan)
    before = state(buyer, order_id)
    forged = wechatpay.sim.notification(order_id, amount_fen=order_row(order_id)["amount_fen"])
    reply = wechat_notify(forged.lower_headers, forged.body)
    assert reply.status == 400 and state(buyer, order_id) == before


@pytest.mark.parametrize("trade_state", ["NOTPAY", "CLOSED", "USERPAYING"])
def test_wechat_non_paid_states_are_acknowledged_and_change_nothing(
    wechatpay: FakeWechatPay, trade_state: str
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan())
    before = state(buyer, order_id)
    n = wechatpay.sim.notification(
        order_id, event_type="TRANSACTION.CLOSED", trade_state=trade_state
    )
    reply = wechat_notify(n.lower_headers, n.body)
    assert (reply.status, reply.json()) == (200, OK)
    assert state(buyer, order_id) == before


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_alipay_non_paid_states_are_acknowledged_and_change_nothing(
    alipay: FakeAlipay, status: str
) -> None:
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan())
    alipay.sim.scan(order_id)
    before = state(buyer, order_id)
    n = alipay.sim.notification(order_id, trade_status=status)
    assert alipay_notify(n.body).body == "success"
    assert state(buyer, order_id) == before


def test_an_order_closed_here_but_paid_at_the_provider_is_paid_and_said_loudly(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=7))
    genuine = wechatpay.pay(order_id)
    with transaction() as tx:
        tx.execute(update(orders).where(orders.c.id == order_id).values(status="closed"))
    with capture_logs() as logs:
        reply = wechat_notify(genuine.lower_headers, genuine.body)
    assert reply.status == 200
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (7, 0)
    loud = [r for r in logs.lines if r["message"] == "order paid after it was closed"]
    assert loud and loud[0]["level"] == "error" and loud[0]["order_id"] == order_id


def test_a_purchase_past_the_quota_ceiling_is_paid_with_the_quota_that_fits(
    wechatpay: FakeWechatPay,
) -> None:
    """The money was taken: the order is paid and the membership extended even though the
    plan's quota does not fit under the ceiling; the quota that fits is granted, once, and
    an operator is told what was not."""
    plan = new_plan(duration_days=30, quota=100)
    buyer = Buyer()
    grant(buyer.user_id, QUOTA_MAX - 30, kind="admin", reason="test funding")
    order_id = wechat_order(buyer, plan)
    genuine = wechatpay.pay(order_id)
    with capture_logs() as logs:
        reply = wechat_notify(genuine.lower_headers, genuine.body)
    assert (reply.status, reply.json()) == (200, OK)
    assert order_row(order_id)["status"] == "paid"
    assert buyer.membership()[1] == plan and member_for_30_days(buyer)
    assert counters(buyer.user_id) == (QUOTA_MAX, 0)
    assert ledger(order_id) == [("purchase", 30)]
    owed = logs.where(order_id=order_id, plan_quota=100, granted=30)
    assert len(owed) == 1 and owed[0]["level"] == "error"
    assert owed[0]["user_id"] == buyer.user_id
    assert buyer.get(order_id).json()["status"] == "paid"
    # a duplicate is acknowledged and grants nothing more
    assert redelivered_changes_nothing(buyer, order_id, genuine)


def test_a_body_nested_too_deep_is_rejected_in_each_providers_words(
    wechatpay: FakeWechatPay, alipay: FakeAlipay
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=5))
    before = state(buyer, order_id)
    deep = b"[" * 200_000 + b"]" * 200_000
    forged = wechatpay.signed_body(deep)
    with capture_logs() as logs:
        reply = wechat_notify(forged.lower_headers, forged.body)
        form = alipay_notify(b"sign=x&fund_bill_list=" + deep)
    assert reply.status == 400 and reply.json()["code"] == "FAIL"
    assert (form.status, form.body) == (200, "fail")
    assert state(buyer, order_id) == before
    assert "Traceback" not in logs.text
    assert [r["outcome"] for r in logs.where(message="payment notification")] == ["rejected"] * 2


def test_one_log_line_per_notification_and_no_secret_in_it(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan())
    genuine = wechatpay.pay(order_id)
    with capture_logs() as logs:
        wechat_notify(genuine.lower_headers, genuine.body)
    lines = [r for r in logs.lines if r["message"] == "payment notification"]
    assert len(lines) == 1
    assert lines[0]["order_id"] == order_id and lines[0]["outcome"] == "accepted"
    assert lines[0]["channel"] == "wechat"
    for secret in (
        genuine.headers["Wechatpay-Signature"],
        wechatpay.sim.apiv3_key,
        genuine.body.decode(),
    ):
        assert secret not in logs.text


# WeChat Pay's transaction_id is 28 digits (string[1,32]), Alipay's trade_no 28 (string(64)):
# the column holds 64 printable ASCII characters, and a report carrying more is refused.
LONGEST_TRADE_ID = "4200" + "0" * 60
UNRECORDABLE_TRADE_IDS = {
    "longer than the column": LONGEST_TRADE_ID + "0",
    "a lone surrogate": "4200\ud800",
    "a space": "4200 0000",
    "not ASCII": "4200\u00e9",  # é
}


def test_the_longest_trade_id_is_the_columns() -> None:
    assert orders.c.provider_trade_id.type.length == len(LONGEST_TRADE_ID)


# What a genuine WeChat Pay notification may carry that no order can take: each field as
# the case gives it, the rest as WeChat Pay sends it.
# What a genuine WeChat Pay notification may carry that no order can take: each field as
# the case gives it (the rest as WeChat Pay sends it), and the word the refusal names.
WECHAT_UNUSABLE: dict[str, tuple[dict[str, Any], str]] = {
    **{
        f"transaction_id {case}": ({"transaction_id": v}, "transaction_id")
        for case, v in UNRECORDABLE_TRADE_IDS.items()
    },
    # Python reads both, but neither is a time in UTC (before year 1, after year 9999)
    "success_time before year 1 in UTC": (
        {"success_time": "0001-01-01T00:00:00+08:00"},
        "success_time",
    ),
    "success_time after year 9999 in UTC": (
        {"success_time": "9999-12-31T23:59:59-08:00"},
        "success_time",
    ),
    # WeChat Pay's out_trade_no is 6-32 of [0-9A-Za-z_-|*]
    "out_trade_no with a lone surrogate": ({"out_trade_no": "ord\ud800er0001"}, "out_trade_no"),
    "out_trade_no of 33 characters": ({"out_trade_no": "o" * 33}, "out_trade_no"),
    "currency with a lone surrogate": (
        {"amount": {"total": 1990, "currency": "C\ud800Y"}},
        "currency",
    ),
    "currency of 3000 letters": ({"amount": {"total": 1990, "currency": "C" * 3000}}, "currency"),
}


def text_in(fields: dict[str, Any]) -> list[str]:
    """The text values of `fields`, an object's among them."""
    nested = [v for value in fields.values() if isinstance(value, dict) for v in value.values()]
    return [v for v in [*fields.values(), *nested] if isinstance(v, str)]


@pytest.mark.parametrize("case", list(WECHAT_UNUSABLE))
def test_a_wechat_notification_carrying_what_no_order_can_take_is_refused_and_said_loudly(
    wechatpay: FakeWechatPay, case: str
) -> None:
    fields, named = WECHAT_UNUSABLE[case]
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(price_fen=1990, quota=10))
    wechatpay.pay(order_id)
    before = state(buyer, order_id)
    forged = wechatpay.sim.notification(order_id, fields=fields)
    with capture_logs() as logs:
        reply = wechat_notify(forged.lower_headers, forged.body)
    assert reply.status == 400, reply.body
    assert reply.json()["code"] == "FAIL" and named in reply.json()["message"]
    assert state(buyer, order_id) == before
    (line,) = logs.where(message="payment notification")
    assert (line["level"], line["outcome"]) == ("error", "rejected") and named in line["reason"]
    # what WeChat Pay sent is named, never repeated (a lone surrogate cannot even be written)
    assert not any(value in reply.body + json.dumps(line) for value in text_in(fields))
    # WeChat Pay sends it again, as it was: the genuine one pays the order
    genuine = wechatpay.sim.notification(order_id)
    assert wechat_notify(genuine.lower_headers, genuine.body).json() == OK
    assert order_row(order_id)["status"] == "paid"


def test_a_wechat_transaction_id_as_long_as_the_column_is_recorded(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=10))
    wechatpay.pay(order_id)
    n = wechatpay.sim.notification(order_id, fields={"transaction_id": LONGEST_TRADE_ID})
    assert (wechat_notify(n.lower_headers, n.body).json()) == OK
    assert order_row(order_id)["provider_trade_id"] == LONGEST_TRADE_ID


# As WECHAT_UNUSABLE, for Alipay's form (which is UTF-8: it cannot carry a lone surrogate).
ALIPAY_UNUSABLE: dict[str, tuple[dict[str, str], str]] = {
    **{
        f"trade_no {case}": ({"trade_no": v}, "trade_no")
        for case, v in UNRECORDABLE_TRADE_IDS.items()
        if case != "a lone surrogate"
    },
    # Alipay's out_trade_no is string(64)
    "out_trade_no of 65 characters": ({"out_trade_no": "o" * 65}, "out_trade_no"),
}


@pytest.mark.parametrize("case", list(ALIPAY_UNUSABLE))
def test_an_alipay_notification_carrying_what_no_order_can_take_is_refused_and_said_loudly(
    alipay: FakeAlipay, case: str
) -> None:
    fields, named = ALIPAY_UNUSABLE[case]
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    before = state(buyer, order_id)
    forged = alipay.sim.notification(order_id, **fields)
    with capture_logs() as logs:
        reply = alipay_notify(forged.body)
    assert (reply.status, reply.body) == (200, "fail")
    assert state(buyer, order_id) == before
    (line,) = logs.where(message="payment notification")
    assert (line["level"], line["outcome"]) == ("error", "rejected") and named in line["reason"]
    assert not any(value in logs.text for value in fields.values())
    # Alipay sends it again, as it was: the genuine one pays the order
    assert alipay_notify(alipay.sim.notification(order_id).body).body == "success"
    assert order_row(order_id)["status"] == "paid"


def test_an_alipay_trade_no_as_long_as_the_column_is_recorded(alipay: FakeAlipay) -> None:
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    n = alipay.sim.notification(order_id, trade_no=LONGEST_TRADE_ID)
    assert alipay_notify(n.body).body == "success"
    assert order_row(order_id)["provider_trade_id"] == LONGEST_TRADE_ID


def test_an_alipay_gmt_payment_that_is_no_time_in_utc_pays_the_order_now(
    alipay: FakeAlipay,
) -> None:
    """Alipay's time dates a payment the rest of the notification proves: midnight of year 1
    in Beijing (before year 1 in UTC) is read as no time, and the order is paid now."""
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    n = alipay.sim.notification(order_id, gmt_payment="0001-01-01 00:00:00")
    reply = alipay_notify(n.body)
    assert (reply.status, reply.body) == (200, "success")
    row = order_row(order_id)
    assert row["status"] == "paid" and counters(buyer.user_id) == (10, 0)
    assert abs((row["paid_at"] - datetime.now(timezone.utc)).total_seconds()) < 60


def test_a_membership_stacked_to_the_end_of_the_calendar_is_paid_and_ends_there(
    wechatpay: FakeWechatPay,
) -> None:
    plan = new_plan(duration_days=3660, quota=5)
    buyer = Buyer()
    with transaction() as tx:
        tx.execute(
            update(users)
            .where(users.c.id == buyer.user_id)
            .values(membership_expires_at=datetime(9995, 1, 1, tzinfo=timezone.utc))
        )
    order_id = wechat_order(buyer, plan)
    genuine = wechatpay.pay(order_id)
    with capture_logs() as logs:
        reply = wechat_notify(genuine.lower_headers, genuine.body)
    assert (reply.status, reply.json()) == (200, OK)
    assert order_row(order_id)["status"] == "paid"
    assert buyer.membership() == (MEMBERSHIP_MAX, plan)
    assert counters(buyer.user_id) == (5, 0)
    (told,) = logs.where(
        order_id=order_id, message="membership extended to the latest time it can hold"
    )
    assert told["level"] == "error"
    assert redelivered_changes_nothing(buyer, order_id, genuine)
