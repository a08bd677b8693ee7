"""The WeChat Pay notify handler beside the verification it contains.

    PYTHONPATH=shared:. .venv/bin/python bench/notify.py [--calls 200]

The handler is the `payments-wechat-notify` function's own `main_handler` called with a
Function URL event, as SCF calls it, with notifications signed and encrypted by the WeChat
Pay fake (tests/fakes). Beside it, timed alternately call by call on the same
notification: the verification alone (`app.payments.wechatpay`: the serial, the RSA-SHA256
signature over the raw body, the timestamp window, AES-256-GCM decryption, merchant and
app), and that verification plus the database floor of the path (the same locking reads
and writes sent with PyMySQL on a kept connection, in one transaction).

Two paths: `paid` (a fresh order each call: the order row locked and moved to paid, the
membership extended, the quota granted through the ledger, the cached profile dropped) and
`repeat` (a notification already applied, as WeChat Pay's retries are: the order's row
locked and found paid).

Runs on a database of its own and BENCH_REDIS_URL (bench/environment.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.environment import SERVER, prepare

DB_NAME = prepare("notify")

import pymysql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.payments import wechatpay  # noqa: E402
from infra.local.sandbox.wechatpay import Notification  # noqa: E402
from tests.fakes.wechatpay import FakeWechatPay  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.function_url import context, event  # noqa: E402
from tests.support.functions import handler  # noqa: E402
from tests.support.payments import Buyer, new_plan  # noqa: E402
from tests.support.settings import settings_env  # noqa: E402


def paired(fn: Callable[[int], Any], floors: list[Callable[[int], Any]], calls: int) -> list[float]:
    """Medians of `fn(i)` and of each floor `f(i)`, timed alternately call by call."""
    samples: list[list[float]] = [[] for _ in range(len(floors) + 1)]
    for i in range(calls):
        for slot, target in enumerate([fn, *floors]):
            started = time.perf_counter()
            target(i)
            samples[slot].append((time.perf_counter() - started) * 1000)
    return [statistics.median(s) for s in samples]


def raw_connection() -> pymysql.connections.Connection[Any]:
    url = make_url(os.environ["DATABASE_URL"])
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        autocommit=False,
    )


def run(calls: int) -> None:
    with FakeWechatPay() as fake, settings_env(**fake.settings()):
        gateway = wechatpay.from_settings(get_settings())
        notify = handler("payments-wechat-notify")
        plan = new_plan(price_fen=990, duration_days=30, quota=10)
        buyer = Buyer()
        order_ids = [buyer.order(plan, "wechat").json()["id"] for _ in range(calls + 5)]
        fresh = [fake.pay(order_id) for order_id in order_ids]
        raw = raw_connection()

        def deliver(n: Notification) -> None:
            answer = notify(
                event("POST", "/payments/wechat/notify", raw_body=n.body, headers=n.lower_headers),
                context("payments-wechat-notify"),
            )
            if answer["statusCode"] != 200:
                raise RuntimeError(answer["body"])

        def verify(n: Notification) -> None:
            gateway.verify(n.lower_headers, n.body)

        def verify_and_paid_floor(n: Notification) -> None:
            # The statements a payment needs, sent raw on a kept connection: the order row
            # locked and moved, the user row locked and its counters and membership
            # written, the ledger's reference looked up and the entry inserted.
            verify(n)
            with raw.cursor() as cur:
                cur.execute("SELECT * FROM orders WHERE id=%s FOR UPDATE", (n.out_trade_no,))
                cur.execute("UPDATE orders SET updated_at=NOW(6) WHERE id=%s", (n.out_trade_no,))
                cur.execute(
                    "SELECT quota_balance, quota_reserved, membership_expires_at FROM users"
                    " WHERE id=%s FOR UPDATE",
                    (buyer.user_id,),
                )
                cur.execute("UPDATE users SET updated_at=NOW(6) WHERE id=%s", (buyer.user_id,))
                cur.execute("SELECT id FROM quota_ledger WHERE ref=%s", ("bench:none",))
            raw.commit()

        def verify_and_repeat_floor(n: Notification) -> None:
            verify(n)
            with raw.cursor() as cur:
                cur.execute("SELECT * FROM orders WHERE id=%s FOR UPDATE", (n.out_trade_no,))
            raw.commit()

        for n in fresh[calls:]:  # warm-up: pool, prepared paths, imports
            deliver(n)
            verify_and_paid_floor(n)
        paid = paired(
            lambda i: deliver(fresh[i]),
            [lambda i: verify(fresh[i]), lambda i: verify_and_paid_floor(fresh[i])],
            calls,
        )
        repeat = paired(
            lambda i: deliver(fresh[i]),
            [lambda i: verify(fresh[i]), lambda i: verify_and_repeat_floor(fresh[i])],
            calls,
        )
        raw.close()
    print(f"medians over {calls} calls, each path timed alternately with its floors (ms)\n")
    print(f"{'path':8} {'handler':>9} {'verify':>8} {'ratio':>7} {'verify+SQL':>11} {'ratio':>7}")
    for name, (ours, alone, floor) in (("paid", paid), ("repeat", repeat)):
        print(
            f"{name:8} {ours:9.3f} {alone:8.3f} {ours / alone:7.2f} {floor:11.3f} "
            f"{ours / floor:7.2f}"
        )
    print(
        "\nratio = handler / verification alone, then handler / verification plus the raw "
        "statements the path cannot avoid (one transaction on a kept PyMySQL connection)."
    )
    print(json.dumps({"paid": paid, "repeat": repeat}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with migrated_database(SERVER, DB_NAME):
        run(args.calls)


if __name__ == "__main__":
    main()
