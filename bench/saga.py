"""Quota saga throughput: reserve-then-confirm for one hot user, app.quota against the same
statements sent with PyMySQL directly, side by side in one run.

    PYTHONPATH=shared:. .venv/bin/python bench/saga.py [--seconds 0.6] [--rounds 10]

Creates its own database on the MariaDB at BENCH_DATABASE_SERVER (default
mysql+pymysql://root@127.0.0.1:3306), migrates it, and drops it at the end. Each cell runs
`--rounds` pairs of `--seconds` slices, raw and ours back to back (which goes first
alternates); the table shows the mean reserve+confirm pairs per second of each side and the
median of the pairs' ours/raw (goal: at least 0.8). Both drop the user's
cached profile after each commit, as every quota change must (app.profiles.forget,
Redis at BENCH_REDIS_URL, default redis://127.0.0.1:6379/6, the deployed kind: fakeredis
would add the same CPU to both sides and flatter the ratio); ours also counts metrics.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"bench_saga_{secrets.token_hex(4)}"
THREADS = (1, 8, 32)
os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER.rstrip('/')}/{DB_NAME}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "DB_POOL_MIN": "0",
        "DB_POOL_MAX": str(max(THREADS) + 4),
        "LOG_LEVEL": "WARNING",
    }
)

import pymysql  # noqa: E402

from app.ids import new_id  # noqa: E402
from app.profiles import forget as forget_cached  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402

_server = urlsplit(SERVER.replace("mysql+pymysql", "mysql"))
CONNECT: dict[str, Any] = {
    "host": _server.hostname or "127.0.0.1",
    "port": _server.port or 3306,
    "user": _server.username or "root",
    "password": _server.password or "",
    "charset": "utf8mb4",
}


def utcnow_naive() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# -- raw: the statements app.quota.service sends, in the same order --------------------------


class RawSaga:
    def __init__(self) -> None:
        self.conn = pymysql.connect(database=DB_NAME, autocommit=False, **CONNECT)
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def close(self) -> None:
        self.conn.close()

    def _lock_user(self, cur: Any, user_id: str) -> tuple[int, int]:
        cur.execute(
            "SELECT quota_balance, quota_reserved FROM users WHERE id = %s FOR UPDATE", (user_id,)
        )
        balance, reserved = cur.fetchone()
        return int(balance), int(reserved)

    def _ledger(self, cur: Any, user_id: str, kind: str, deltas: tuple[int, int],
                after: tuple[int, int], task_id: str, now: datetime) -> None:  # fmt: skip
        cur.execute(
            "INSERT INTO quota_ledger (id, user_id, kind, balance_delta, reserved_delta, "
            "balance_after, reserved_after, task_id, ref, reason, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s)",
            (new_id(), user_id, kind, *deltas, *after, task_id, f"saga:{kind}:{task_id}", now),
        )

    def reserve(self, user_id: str, task_id: str, amount: int) -> None:
        try:
            with self.conn.cursor() as cur:
                balance, reserved = self._lock_user(cur, user_id)
                now = utcnow_naive()
                if balance < amount:
                    raise RuntimeError("bench user ran out of quota")
                cur.execute(
                    "INSERT IGNORE INTO quota_transactions "
                    "(id, task_id, user_id, amount, phase, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, 'reserved', %s, %s)",
                    (new_id(), task_id, user_id, amount, now, now),
                )
                if cur.rowcount != 1:
                    raise RuntimeError("task already reserved")
                cur.execute(
                    "UPDATE users SET quota_balance = %s, quota_reserved = %s, updated_at = %s "
                    "WHERE id = %s",
                    (balance - amount, reserved + amount, now, user_id),
                )
                self._ledger(
                    cur, user_id, "reserve", (-amount, amount),
                    (balance - amount, reserved + amount), task_id, now,
                )  # fmt: skip
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        forget_cached(user_id)

    def confirm(self, task_id: str) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT user_id, amount, phase FROM quota_transactions WHERE task_id = %s",
                    (task_id,),
                )
                user_id, amount, phase = cur.fetchone()
                if phase != "reserved":
                    raise RuntimeError("not reserved")
                balance, reserved = self._lock_user(cur, user_id)
                now = utcnow_naive()
                cur.execute(
                    "UPDATE quota_transactions SET phase = 'confirmed', updated_at = %s "
                    "WHERE task_id = %s AND phase = 'reserved'",
                    (now, task_id),
                )
                if cur.rowcount != 1:
                    raise RuntimeError("settled meanwhile")
                cur.execute(
                    "UPDATE users SET quota_balance = %s, quota_reserved = %s, updated_at = %s "
                    "WHERE id = %s",
                    (balance, reserved - amount, now, user_id),
                )
                self._ledger(
                    cur, user_id, "confirm", (0, -amount), (balance, reserved - amount),
                    task_id, now,
                )  # fmt: skip
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        forget_cached(user_id)


# -- the run ----------------------------------------------------------------------------------


def run(threads: int, seconds: float, make_worker: Callable[[], Callable[[], None]]) -> float:
    """Pairs per second over `seconds`, `threads` workers started together."""
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)

    def loop(slot: int) -> None:
        try:
            step = make_worker()
        except BaseException as error:
            errors.append(error)
            ready.abort()
            return
        ready.wait()
        try:
            while not stop.is_set():
                step()
                counts[slot] += 1
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    with migrated_database(SERVER, DB_NAME):
        from sqlalchemy import insert

        from app import quota
        from app.clock import utcnow
        from app.db.tables import users
        from app.db.transaction import transaction
        from app.quota.ledger import discrepancies

        user_id = new_id()
        with transaction() as conn:
            conn.execute(insert(users).values(id=user_id, created_at=utcnow(), updated_at=utcnow()))
        quota.grant(user_id, 2_000_000_000, kind="admin", reason="bench funding")

        def ours() -> Callable[[], None]:
            def step() -> None:
                task_id = new_id()
                quota.reserve(user_id, task_id, 1)
                quota.confirm(task_id)

            return step

        raw_sagas: list[RawSaga] = []
        lock = threading.Lock()

        def raw() -> Callable[[], None]:
            saga = RawSaga()
            with lock:
                raw_sagas.append(saga)

            def step() -> None:
                task_id = new_id()
                saga.reserve(user_id, task_id, 1)
                saga.confirm(task_id)

            return step

        run(1, min(args.seconds, 0.5), ours)  # warm both paths: imports, pool, statement cache
        run(1, min(args.seconds, 0.5), raw)

        print(f"reserve+confirm pairs/s, one hot user, {args.rounds} x {args.seconds:g} s each")
        print(f"{'threads':>8} {'raw pymysql':>12} {'app.quota':>12} {'ours/raw':>9}")
        ratios = []
        for threads in THREADS:
            raw_rates, our_rates = [], []
            for index in range(args.rounds):
                # Paired, short, alternating slices: the database's speed drifts (flushes,
                # other load), and a drift then hits both sides of a pair alike.
                for side in ("raw", "ours") if index % 2 == 0 else ("ours", "raw"):
                    if side == "raw":
                        raw_rates.append(run(threads, args.seconds, raw))
                        for saga in raw_sagas:
                            saga.close()
                        raw_sagas.clear()
                    else:
                        our_rates.append(run(threads, args.seconds, ours))
            ratio = statistics.median(o / r for o, r in zip(our_rates, raw_rates, strict=True))
            ratios.append(ratio)
            raw_rate, our_rate = statistics.mean(raw_rates), statistics.mean(our_rates)
            print(f"{threads:>8} {raw_rate:>12.0f} {our_rate:>12.0f} {ratio:>9.2f}")
        print(f"lowest ratio {min(ratios):.2f} (goal >= 0.80)")

        with transaction() as conn:
            found = discrepancies(conn, [user_id])
        print("ledger consistent" if not found else f"LEDGER DISCREPANCIES: {found[:3]}")
        return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())
