"""PATCH /admin/users/{id} never leaves the system without an admin who can act: the last
one demoted or disabled could only be brought back in the database (ADMIN_PHONES promotes
at sign-in, it never enables)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select, update

from app.db.tables import users
from app.db.transaction import transaction
from app.errors import AppError
from app.identity import users as user_service
from tests.identity.conftest import Flows
from tests.support.audit import an_actor


def _signed_in_admin(flows: Flows) -> tuple[str, str]:
    """(id, access token) of a fresh admin."""
    token = flows.admin_token()
    return str(flows.me(token).json()["id"]), token


def _only_admins(*user_ids: str) -> None:
    """The database holds no admin but these (earlier tests left theirs)."""
    with transaction() as tx:
        tx.execute(
            update(users)
            .where(users.c.role == "admin", users.c.id.not_in(user_ids))
            .values(role="user")
        )


def _patch(flows: Flows, token: str, user_id: str, body: dict[str, Any]) -> Any:
    return flows.call("admin-users-id", "PATCH", f"/admin/users/{user_id}", body=body, token=token)


def test_the_last_admin_can_neither_demote_nor_disable_themselves(flows: Flows) -> None:
    admin_id, token = _signed_in_admin(flows)
    _only_admins(admin_id)
    before = flows.me(token).json()
    for body in ({"role": "user"}, {"disabled": True}, {"role": "user", "disabled": False}):
        reply = _patch(flows, token, admin_id, body)
        assert (reply.status, reply.json()["code"]) == (403, "FORBIDDEN"), body
    assert flows.me(token).json() == before
    # What leaves an admin in place is no change to refuse.
    assert _patch(flows, token, admin_id, {"role": "admin", "disabled": False}).status == 200
    assert _patch(flows, token, admin_id, {}).status == 200


def test_admins_may_be_demoted_and_disabled_while_another_is_left(flows: Flows) -> None:
    first_id, first = _signed_in_admin(flows)
    second_id, second = _signed_in_admin(flows)
    third_id, _ = _signed_in_admin(flows)
    _only_admins(first_id, second_id, third_id)
    assert _patch(flows, first, third_id, {"disabled": True}).status == 200
    assert _patch(flows, first, first_id, {"role": "user"}).status == 200
    # The disabled admin is no admin who can act: the second is the last.
    reply = _patch(flows, second, second_id, {"disabled": True})
    assert (reply.status, reply.json()["code"]) == (403, "FORBIDDEN")
    assert flows.me(second).json()["role"] == "admin"
    # Enabling the third again gives the second someone to leave it to.
    assert _patch(flows, second, third_id, {"disabled": False}).status == 200
    assert _patch(flows, second, second_id, {"role": "user"}).status == 200


def _demote_each_other(first_id: str, second_id: str) -> dict[str, str]:
    """Each admin demoted on a thread of its own, at once: what each call ended with."""
    barrier = threading.Barrier(2)
    ended: dict[str, str] = {}

    def demote(user_id: str) -> None:
        barrier.wait()
        try:
            user_service.admin_change(user_id, actor=an_actor(), role="user")
            ended[user_id] = "demoted"
        except AppError as error:
            ended[user_id] = error.code.value

    threads = [threading.Thread(target=demote, args=(u,)) for u in (first_id, second_id)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return ended


def test_two_admins_demoting_each_other_at_once_leave_one(flows: Flows) -> None:
    for _ in range(3):
        first_id, _token = _signed_in_admin(flows)
        second_id, _token = _signed_in_admin(flows)
        _only_admins(first_id, second_id)
        ended = _demote_each_other(first_id, second_id)
        assert sorted(ended.values()) == ["FORBIDDEN", "demoted"]
        with transaction() as tx:
            left = tx.execute(
                select(users.c.id).where(users.c.role == "admin", users.c.disabled.is_(False))
            ).scalars()
            assert [ended[user_id] for user_id in left] == ["FORBIDDEN"]
