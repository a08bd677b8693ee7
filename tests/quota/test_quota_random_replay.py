"""A random mix of every quota verb from several threads on MariaDB: whatever the order, the
ledger explains the counters, reserved is the sum of the open reservations, no counter goes
below zero or past QUOTA_MAX, and what the verbs reported is what the database holds."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.db.conflicts import is_lock_conflict
from app.db.tables import quota_transactions
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.quota import cancel, confirm, grant, reserve
from app.quota.service import QUOTA_MAX, GrantKind
from tests.support.quota import assert_ledger_consistent, counters, new_user

THREADS = 8
OPS_PER_THREAD = 60
# The refusals a random call may meet; anything else (a 500, a deadlock) fails the test.
EXPECTED_REFUSALS = {
    ErrorCode.QUOTA_INSUFFICIENT,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
    ErrorCode.TASK_NOT_CANCELLABLE,
}


class RolledBack(Exception):
    """A caller's transaction given up after the verb ran in it."""


@dataclass
class Shared:
    """What every thread draws from, and the moves the verbs said they made."""

    users: list[str]
    tasks: dict[str, tuple[str, int]] = field(default_factory=dict)  # task -> (user, amount)
    refs: dict[str, tuple[str, int, GrantKind, bool]] = field(default_factory=dict)
    moved: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, user: str, balance: int, reserved: int) -> None:
        with self.lock:
            self.moved[user][0] += balance
            self.moved[user][1] += reserved

    def known_task(self, rng: random.Random) -> tuple[str, str, int] | None:
        with self.lock:
            if not self.tasks:
                return None
            task = rng.choice(sorted(self.tasks))
            return (task, *self.tasks[task])


def one_op(shared: Shared, rng: random.Random) -> None:
    user = rng.choice(shared.users)
    roll = rng.random()
    if roll < 0.35:
        task, amount = new_id(), rng.randint(0, 12)
        with shared.lock:
            shared.tasks[task] = (user, amount)
        held = reserve(user, task, amount)
        if held.created:
            shared.add(user, -amount, amount)
    elif roll < 0.45:
        known = shared.known_task(rng)
        if known is not None:
            task, owner, amount = known
            # The same terms repeat (or reserve, when the first was refused); others are refused.
            held = reserve(owner, task, amount + rng.choice((0, 0, 1)))
            if held.created:
                shared.add(owner, -held.amount, held.amount)
    elif roll < 0.75:
        known = shared.known_task(rng)
        task = known[0] if known is not None and rng.random() < 0.9 else new_id()
        settled = (confirm if rng.random() < 0.5 else cancel)(task)
        if settled.changed and settled.amount:
            owner = shared.tasks[task][0]
            back = settled.amount if settled.phase == "cancelled" else 0
            shared.add(owner, back, -settled.amount)
    elif roll < 0.85:
        # A verb inside a caller's transaction that then rolls back: nothing of it stays.
        known = shared.known_task(rng)
        with pytest.raises(RolledBack), transaction() as conn:
            if known is not None and rng.random() < 0.5:
                (confirm if rng.random() < 0.5 else cancel)(known[0], tx=conn)
            else:
                reserve(user, new_id(), rng.randint(0, 5), tx=conn)
            raise RolledBack
    else:
        ceiling = rng.random() < 0.3
        amount = rng.choice((QUOTA_MAX, rng.randint(1, 20))) if ceiling else rng.randint(-15, 20)
        kind: GrantKind = "purchase" if ceiling or amount > 0 else "admin"
        with shared.lock:
            if shared.refs and rng.random() < 0.3:
                # A duplicate: the same grant again, or now and then other terms (refused).
                ref = rng.choice(sorted(shared.refs))
                user, amount, kind, ceiling = shared.refs[ref]
                amount += rng.choice((0, 0, 0, 1))
            else:
                ref = f"ref:{new_id()}"
                shared.refs[ref] = (user, amount or 1, kind, ceiling)
                amount = amount or 1
        done = grant(user, amount, kind=kind, reason="random", ref=ref, up_to_ceiling=ceiling)
        if done.applied:
            shared.add(user, done.entry.balance_delta, 0)


def run_thread(shared: Shared, seed: int) -> list[str]:
    rng = random.Random(seed)
    unexpected: list[str] = []
    for _ in range(OPS_PER_THREAD):
        try:
            one_op(shared, rng)
        except AppError as error:
            if error.code not in EXPECTED_REFUSALS:
                unexpected.append(f"{error.code.value}: {error.message}")
        except OperationalError as error:
            # A cancel that waited on a reserve's insert of its task holds that row when it
            # asks for the user's, as a settle of the task holds them the other way round:
            # the server rolls one back whole, and its caller runs it again
            # (app.tasks.lifecycle). What it did is gone; the invariant below still holds.
            if not is_lock_conflict(error):
                raise
    return unexpected


def test_a_random_mix_from_several_threads_keeps_the_ledger_and_the_counters_together() -> None:
    funding = [30, 5, QUOTA_MAX - 40]
    shared = Shared(users=[new_user(amount) for amount in funding])
    seed = random.randrange(2**32)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(lambda i: run_thread(shared, seed + i), range(THREADS)))

    assert [problem for found in results for problem in found] == [], f"seed {seed}"
    assert_ledger_consistent(shared.users)
    with transaction() as conn:
        held = dict(
            conn.execute(
                select(quota_transactions.c.user_id, func.sum(quota_transactions.c.amount))
                .where(quota_transactions.c.phase == "reserved")
                .where(quota_transactions.c.user_id.in_(shared.users))
                .group_by(quota_transactions.c.user_id)
            ).all()
        )
    for user, funded in zip(shared.users, funding, strict=True):
        balance, reserved = counters(user)
        moved_balance, moved_reserved = shared.moved[user]
        assert (balance, reserved) == (funded + moved_balance, moved_reserved), f"seed {seed}"
        assert reserved == int(held.get(user, 0)), f"seed {seed}"
        assert min(balance, reserved) >= 0, f"seed {seed}"
        assert balance + reserved <= QUOTA_MAX, f"seed {seed}"
