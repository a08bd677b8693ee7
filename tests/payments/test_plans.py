"""Plans: an admin's `PUT /admin/plans/{id}` (validated), `GET /plans` from the
configuration cache, dropped after a save commits; a disabled plan is not listed."""

from __future__ import annotations

from typing import Any

import pytest

from app import cache
from app.payments import plans
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.lists import BAD_QUERIES, cursor_of, every_page, get, refused
from tests.support.payments import admin_token, new_plan_id, put_plan
from tests.support.pipelines import token_for
from tests.support.quota import new_user


def listed() -> list[dict[str, Any]]:
    return every_page("plans-list", "/plans", 100)


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


def some_plans(count: int) -> list[str]:
    """`count` new plans, three to a price, their ids mixing `_`, `-`, letters and digits."""
    prefix = new_plan_id()
    suffixes = ["b", "_a", "-a", "a", "0", "a_b", "ab", "a-b"]
    ids = [f"{prefix}{suffixes[i % len(suffixes)]}{i}" for i in range(count)]
    for i, plan_id in enumerate(ids):
        assert put_plan(plan_id, price_fen=5000 + i // 3).status == 200
    return ids


def test_paging_lists_every_plan_once_cheapest_first_then_by_id() -> None:
    ours = some_plans(23)
    for limit in (1, 4, 20, 100):
        items = every_page("plans-list", "/plans", limit)
        ids = [p["id"] for p in items]
        assert len(ids) == len(set(ids)) and set(ours) <= set(ids), limit
        assert [(p["price_fen"], p["id"]) for p in items] == sorted(
            (p["price_fen"], p["id"]) for p in items
        )


def test_the_page_size_is_20_by_default() -> None:
    some_plans(21)
    page = get("plans-list", "/plans").json()
    assert len(page["items"]) == 20 and page["next_cursor"] is not None
    rest = get("plans-list", "/plans", cursor=page["next_cursor"], limit="100").json()
    assert page["items"] + rest["items"] == listed()[:120]


def test_a_cursor_goes_on_after_its_plan_even_when_that_plan_is_gone() -> None:
    ours = some_plans(6)
    mine = [p for p in listed() if p["id"] in ours]
    first = mine[2]
    cursor = cursor_of([first["price_fen"], first["id"]])
    assert put_plan(first["id"], price_fen=first["price_fen"], enabled=False).status == 200
    after = get("plans-list", "/plans", cursor=cursor, limit="100").json()["items"]
    later = [p for p in listed() if (p["price_fen"], p["id"]) > (first["price_fen"], first["id"])]
    assert after == later[:100]
    assert [p for p in after if p["id"] in ours] == mine[3:]
    past_all = get("plans-list", "/plans", cursor=cursor_of([2**70, "z"])).json()
    assert past_all == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(("query", "parameter"), BAD_QUERIES)
def test_bad_paging_parameters_are_422(query: dict[str, str], parameter: str) -> None:
    assert refused(get("plans-list", "/plans", **query), parameter)


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
