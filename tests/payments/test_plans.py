"""Plans: an admin's `PUT /admin/plans/{id}` (validated), `GET /plans` from the
configuration cache, dropped after a save commits; a disabled plan is not listed."""

from __future__ import annotations

from typing import Any

import pytest

from app import cache
from app.payments import plans
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.payments import admin_token, new_plan_id, put_plan
from tests.support.pipelines import token_for
from tests.support.quota import new_user


def listed() -> list[dict[str, Any]]:
    reply = call(handler("plans-list"), "GET", "/plans")
    assert reply.status == 200
    return list(reply.json()["items"])


def test_a_saved_plan_is_listed_at_once_and_disabling_it_removes_it() -> None:
    plan_id = new_plan_id()
    before = listed()  # fills the cache
    assert plan_id not in [p["id"] for p in before]
    reply = put_plan(plan_id, price_fen=990, duration_days=30, quota=100)
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "id": plan_id,
        "name": f"plan {plan_id}",
        "price_fen": 990,
        "duration_days": 30,
        "quota": 100,
        "enabled": True,
        "updated_at": reply.json()["updated_at"],
    }
    shown = {p["id"]: p for p in listed()}
    assert shown[plan_id] == {
        "id": plan_id,
        "name": f"plan {plan_id}",
        "price_fen": 990,
        "duration_days": 30,
        "quota": 100,
    }
    assert put_plan(plan_id, price_fen=990, enabled=False).status == 200
    assert plan_id not in [p["id"] for p in listed()]


def test_the_list_is_served_from_the_cache() -> None:
    plan_id = new_plan_id()
    assert put_plan(plan_id).status == 200
    listed()
    assert any(p["id"] == plan_id for p in cache.get_or_set(plans.LIST_CACHE_KEY, list, 60))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_fen", 0),
        ("price_fen", -1),
        ("price_fen", 1.5),
        ("price_fen", "1990"),
        ("duration_days", 0),
        ("quota", -1),
        ("name", ""),
        ("name", "x" * 101),
        ("enabled", "yes"),
    ],
)
def test_invalid_plans_are_refused_and_change_nothing(field: str, value: Any) -> None:
    plan_id = new_plan_id()
    reply = put_plan(plan_id, **{field: value})
    assert reply.status == 422, reply.body
    assert reply.json()["code"] == "VALIDATION_ERROR"
    assert reply.json()["details"][0]["loc"] == ["body", field]
    assert plan_id not in [p["id"] for p in listed()]


def test_unknown_fields_and_bad_ids_are_refused() -> None:
    token = admin_token()
    body = {"name": "x", "price_fen": 1, "duration_days": 1, "quota": 0, "enabled": True}
    reply = call(
        handler("admin-plans-put"),
        "PUT",
        f"/admin/plans/{new_plan_id()}",
        body={**body, "discount": 5},
        token=token,
    )
    assert reply.status == 422 and reply.json()["details"][0]["loc"] == ["body", "discount"]
    reply = call(
        handler("admin-plans-put"), "PUT", "/admin/plans/Not_Lower", body=body, token=token
    )
    assert reply.status == 422 and reply.json()["details"][0]["loc"] == ["path", "id"]


def test_a_user_cannot_edit_plans() -> None:
    reply: Reply = call(
        handler("admin-plans-put"),
        "PUT",
        f"/admin/plans/{new_plan_id()}",
        body={"name": "x", "price_fen": 1, "duration_days": 1, "quota": 0, "enabled": True},
        token=token_for(new_user()),
    )
    assert reply.status == 403
    assert call(handler("admin-plans-put"), "PUT", "/admin/plans/x", body={}).status == 401
