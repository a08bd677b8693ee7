"""The admins' reads of `users` go through its indexes, whatever the number of users: a page
of the list is read in index order (no sort of every user, which passed the read timeout
at a few million), and a change of role or state finds the admins who can act without
touching, or waiting for, any other user's row."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from sqlalchemy import event, insert, select, text

from app.clock import utcnow
from app.db.engine import get_engine
from app.db.tables import users
from app.db.transaction import transaction
from app.identity import users as user_service
from app.ids import new_id
from tests.support.audit import an_actor
from tests.support.database import a_database_of_its_own
from tests.support.lock_waits import RowLock
from tests.support.quota import new_user
from tests.support.settings import app_engine_under

# Enough users that MariaDB's plan is the one it takes for many more: below about a hundred
# times a page, sorting the whole table costs it less than reading an index in order.
USERS = 6000
ADMINS = 3
# Index lookups: one row, one key's rows or key ranges; not a scan of the table or of a whole
# index, and not an index merge, which reads the rows its primary-key part finds last,
# out of the id order the admins' locks are taken in.
LOOKUPS = {"const", "eq_ref", "ref", "range"}


class Plan(NamedTuple):
    statement: str
    access: str | None
    key: str | None
    extra: str


@pytest.fixture
def many_users() -> Iterator[list[str]]:
    """A database of the test's own with USERS users, the first ADMINS of them admins, newest
    first; their ids, the admins' first."""
    with a_database_of_its_own("users"):
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "role": "admin" if n < ADMINS else "user",
                "created_at": now - timedelta(seconds=n),
                "updated_at": now,
            }
            for n in range(USERS)
        ]
        with transaction() as tx:
            tx.execute(insert(users), rows)
            tx.execute(text("ANALYZE TABLE users"))
        yield [row["id"] for row in rows]


def plans_of(call: Callable[[], Any]) -> list[Plan]:
    """MariaDB's plan of each SELECT of `users` that `call` ran, in the order it ran them."""
    run: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            run.append((statement, parameters))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in run:
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
            assert len(rows) == 1, rows
            plan = rows[0]
            plans.append(Plan(statement, plan["type"], plan["key"], plan["Extra"] or ""))
    return plans


def test_a_page_of_users_is_read_in_the_index_order_not_sorted(many_users: list[str]) -> None:
    pages: list[Any] = []
    plans = plans_of(
        lambda: pages.append(user_service.admin_list(phone=None, limit=20, cursor=None))
    )
    cursor = pages[0].next_cursor
    plans += plans_of(
        lambda: pages.append(user_service.admin_list(phone=None, limit=20, cursor=cursor))
    )
    assert [u.id for page in pages for u in page.items] == many_users[:40]
    assert len(plans) == 2
    for plan in plans:
        assert plan.key == "ix_users_created" and "filesort" not in plan.extra, plan


def test_a_change_of_an_admin_looks_up_the_admins_by_their_index(many_users: list[str]) -> None:
    demoted = many_users[1]
    plans = plans_of(lambda: user_service.admin_change(demoted, actor=an_actor(), role="user"))
    assert plans
    for plan in plans:
        assert plan.access in LOOKUPS, plan
    assert "ix_users_role_disabled" in {plan.key for plan in plans}, plans


@pytest.fixture
def one_second_waits() -> Iterator[None]:
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        yield


def test_a_user_row_another_transaction_holds_keeps_no_admin_waiting(
    one_second_waits: None,
) -> None:
    """As a quota reserve holds its user's row: demoting an admin does not wait for it."""
    kept, demoted = new_user(role="admin"), new_user(role="admin")
    member = new_user()
    lock = RowLock()
    lock.take(select(users.c.id).where(users.c.id == member))
    try:
        # Had it waited for the held row, the wait would have ended in a lock wait timeout.
        user_service.admin_change(demoted, actor=an_actor(), role="user")
    finally:
        lock.release()
    with transaction() as tx:
        roles = dict(
            tx.execute(
                select(users.c.id, users.c.role).where(users.c.id.in_([kept, demoted]))
            ).all()
        )
    assert roles == {kept: "admin", demoted: "user"}
