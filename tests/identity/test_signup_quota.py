"""SIGNUP_QUOTA is granted through the ledger in the transaction that creates the user."""

from __future__ import annotations

import secrets
import threading

import pytest
from sqlalchemy import select

from app.db.tables import quota_ledger
from app.db.transaction import transaction
from app.quota import ledger
from tests.identity.conftest import Flows
from tests.support.settings import settings_env


def _entries(user_id: str) -> list[dict]:
    with transaction() as conn:
        query = select(quota_ledger).where(quota_ledger.c.user_id == user_id)
        return [dict(r) for r in conn.execute(query).mappings()]


def test_a_new_user_starts_with_the_signup_quota_and_its_ledger_entry(flows: Flows) -> None:
    with settings_env(SIGNUP_QUOTA="5"):
        user = flows.registered()["user"]
    assert user["quota"] == {"balance": 5, "reserved": 0}
    (entry,) = _entries(user["id"])
    assert (entry["kind"], entry["balance_delta"], entry["balance_after"]) == ("signup", 5, 5)
    with transaction() as conn:
        assert ledger.discrepancies(conn, [user["id"]]) == []


def test_no_grant_when_the_signup_quota_is_zero(flows: Flows) -> None:
    user = flows.registered()["user"]
    assert user["quota"]["balance"] == 0 and _entries(user["id"]) == []


def test_concurrent_first_logins_grant_once(flows: Flows) -> None:
    openid = "o" + secrets.token_hex(10)
    codes = [f"c-{secrets.token_hex(6)}" for _ in range(6)]
    for code in codes:
        flows.wechat.code(code, openid=openid)
    barrier = threading.Barrier(len(codes))
    replies: list = [None] * len(codes)

    def login(i: int) -> None:
        barrier.wait()
        replies[i] = flows.wechat_login(codes[i])

    with settings_env(SIGNUP_QUOTA="3"):
        threads = [threading.Thread(target=login, args=(i,)) for i in range(len(codes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    user_id = replies[0].json()["user"]["id"]
    assert [e["kind"] for e in _entries(user_id)] == ["signup"]
    assert {r.json()["user"]["quota"]["balance"] for r in replies} == {3}


def test_a_signup_quota_past_the_quota_ceiling_is_refused_at_load() -> None:
    # Beyond what a balance can hold, every sign-up would be refused (422) instead.
    from pydantic import ValidationError

    from app.config import Settings

    assert Settings.from_environ({"SIGNUP_QUOTA": str(2**31 - 1)}).signup_quota == 2**31 - 1
    with pytest.raises(ValidationError) as refused:
        Settings.from_environ({"SIGNUP_QUOTA": str(2**31)})
    assert "signup_quota" in str(refused.value)


def test_the_largest_signup_quota_is_granted_whole(flows: Flows) -> None:
    with settings_env(SIGNUP_QUOTA=str(2**31 - 1)):
        user = flows.registered()["user"]
    assert user["quota"] == {"balance": 2**31 - 1, "reserved": 0}
