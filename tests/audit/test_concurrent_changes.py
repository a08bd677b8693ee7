"""Admins changing users at once, on threads of their own against the real database: the
record each change writes takes no lock another change waits for (a row of its own, no
unique key but its random id, READ COMMITTED: no gap locks), so changes that lock the
enabled admins in id order, then a user's row, still queue instead of deadlocking, and
each change that committed has exactly one row (one that changed nothing, none)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from app.db.transaction import transaction
from app.errors import AppError
from app.identity import users as user_service
from app.quota.service import grant
from tests.support.audit import actions_on, an_actor
from tests.support.quota import new_user

THREADS = 8
ROUNDS = 12


def test_concurrent_admin_changes_neither_deadlock_nor_lose_or_double_a_record() -> None:
    admins = [new_user(role="admin") for _ in range(4)]
    members = [new_user(50) for _ in range(2)]
    targets = admins + members
    barrier = threading.Barrier(THREADS)
    done: Counter[tuple[str, str]] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        pick = random.Random(seed)
        barrier.wait()
        for _ in range(ROUNDS):
            target = pick.choice(targets)
            verb = pick.choice(("role", "disabled", "grant"))
            try:
                if verb == "role":
                    role = pick.choice(("admin", "user"))
                    user_service.admin_change(target, actor=an_actor(), role=role)
                    action = "user.change"
                elif verb == "disabled":
                    flag = pick.choice((True, False))
                    user_service.admin_change(target, actor=an_actor(), disabled=flag)
                    action = "user.change"
                else:
                    grant(target, 1, kind="admin", reason="at once", actor=an_actor())
                    action = "quota.grant"
            except AppError as error:
                if error.code.value == "FORBIDDEN":  # the last admin refused: changed nothing
                    continue
                # Any other refusal fails the test here: an assert in this thread would only
                # end the thread, which pytest reports as a warning.
                with lock:
                    failures.append(error)
                return
            except BaseException as error:  # a deadlock, a lock wait timeout
                with lock:
                    failures.append(error)
                return
            with lock:
                done[(target, action)] += 1

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [], [repr(f)[:300] for f in failures]
    grants = Counter(
        (row["target"], row["action"])
        for t in targets
        for row in actions_on(t)
        if row["action"] == "quota.grant"
    )
    assert grants == Counter({key: n for key, n in done.items() if key[1] == "quota.grant"})
    # A change that gave a field the value it had records nothing, and which did depends on
    # the order the threads took: each target's records, in the order their row lock gave
    # them, go from what it was made as to what it is, each from where the last one left it,
    # so a record lost, doubled or of no change breaks the chain.
    for target in targets:
        state: dict[str, Any] = {"role": "admin" if target in admins else "user", "disabled": False}
        changes = [row for row in actions_on(target) if row["action"] == "user.change"]
        assert len(changes) <= done[(target, "user.change")]
        for row in changes:
            before, after = row["changes"]["before"], row["changes"]["after"]
            assert before != after and before == {name: state[name] for name in before}, row
            state.update(after)
        with transaction() as tx:
            now = user_service.get(tx, target)
        assert now is not None and {name: now[name] for name in state} == state, target
