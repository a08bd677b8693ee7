"""GET/PATCH /users/me and the admin user routes."""

from __future__ import annotations

import base64
import json

from tests.identity.conftest import Flows, new_phone


def _patch_me(flows: Flows, token: str, body: dict):
    return flows.call("users-me", "PATCH", "/users/me", body=body, token=token)


def test_get_me_is_the_user_of_the_token(flows: Flows) -> None:
    pair = flows.registered()
    reply = flows.me(pair["access_token"])
    assert reply.status == 200 and reply.json() == pair["user"]
    assert flows.me(pair["access_token"]).json() == pair["user"]  # served from the cache


def test_patch_me_changes_and_trims(flows: Flows) -> None:
    token = flows.registered()["access_token"]
    reply = _patch_me(
        flows,
        token,
        {"nickname": "  小明  ", "avatar": "https://img.example/x.png", "gender": "male"},
    )
    assert reply.status == 200, reply.body
    data = reply.json()
    assert (data["nickname"], data["avatar"], data["gender"]) == (
        "小明",
        "https://img.example/x.png",
        "male",
    )
    assert flows.me(token).json() == data
    cleared = _patch_me(flows, token, {"avatar": None}).json()
    assert cleared["avatar"] is None and cleared["nickname"] == "小明"
    assert _patch_me(flows, token, {}).json() == cleared


def test_patch_me_refuses_bad_values_and_changes_nothing(flows: Flows) -> None:
    token = flows.registered()["access_token"]
    before = flows.me(token).json()
    bad = [
        {"nickname": "   "},
        {"nickname": "x" * 33},
        {"nickname": "a\u0007b"},
        {"nickname": "a\u202eb"},
        {"avatar": "http://img.example/x.png"},
        {"avatar": "https://" + "x" * 505},
        {"avatar": "javascript:alert(1)"},
        {"gender": "other"},
        {"gender": None},
        {"nickname": 5},
    ]
    for body in bad:
        reply = _patch_me(flows, token, body)
        assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), body
        assert reply.json()["details"][0]["loc"][0] == "body"
    assert _patch_me(flows, token, {"nickname": "x" * 32}).status == 200
    assert _patch_me(flows, token, {"avatar": "https://" + "x" * 504}).status == 200
    assert flows.me(token).json()["gender"] == before["gender"]


def test_admin_lists_users_by_exact_phone(flows: Flows) -> None:
    admin = flows.admin_token()
    pair = flows.registered()
    phone = pair["user"]["phone"]
    reply = flows.call(
        "admin-users-list", "GET", "/admin/users", query={"phone": phone[3:]}, token=admin
    )
    assert reply.status == 200
    assert reply.json() == {"items": [pair["user"]], "next_cursor": None}
    other = flows.registered()["user"]
    assert other not in reply.json()["items"]
    bad = flows.call("admin-users-list", "GET", "/admin/users", query={"phone": "12"}, token=admin)
    assert bad.status == 422


def test_admin_list_pages_with_a_cursor(flows: Flows) -> None:
    admin = flows.admin_token()
    for _ in range(3):
        flows.registered()
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = flows.call(
            "admin-users-list", "GET", "/admin/users", query=query, token=admin
        ).json()
        assert len(page["items"]) <= 2
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 4
    locs = []
    for bad in ("not-a-cursor", "eyJ4IjoxfQ"):
        reply = flows.call(
            "admin-users-list", "GET", "/admin/users", query={"cursor": bad}, token=admin
        )
        assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR")
        locs.append(reply.json()["details"][0]["loc"])
    assert locs == [["query", "cursor"], ["query", "cursor"]]
    over = flows.call(
        "admin-users-list", "GET", "/admin/users", query={"limit": "101"}, token=admin
    )
    assert over.status == 422


def test_a_crafted_cursor_out_of_the_time_range_is_422(flows: Flows) -> None:
    admin = flows.admin_token()
    for created in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        cursor = base64.urlsafe_b64encode(json.dumps([created, "x"]).encode()).decode()
        reply = flows.call(
            "admin-users-list", "GET", "/admin/users", query={"cursor": cursor}, token=admin
        )
        assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), created
        assert reply.json()["details"][0]["loc"] == ["query", "cursor"]


def test_admin_patch_role_and_disable(flows: Flows) -> None:
    admin = flows.admin_token()
    pair = flows.registered()
    user_id = pair["user"]["id"]

    def patch(body: dict):
        return flows.call(
            "admin-users-id",
            "PATCH",
            f"/admin/users/{user_id}",
            body=body,
            token=admin,
        )

    promoted = patch({"role": "admin"})
    assert promoted.status == 200 and promoted.json()["role"] == "admin"
    assert flows.me(pair["access_token"]).json()["role"] == "admin"  # cache invalidated
    assert patch({"role": "root"}).status == 422
    assert patch({"disabled": True}).status == 200
    assert flows.refresh(pair["refresh_token"]).json()["code"] == "ACCOUNT_DISABLED"
    assert flows.login(pair["user"]["phone"]).json()["code"] == "ACCOUNT_DISABLED"
    assert patch({"disabled": False}).status == 200
    # enabling revives no session: the refresh token of the one disabling ended is 401
    assert flows.refresh(pair["refresh_token"]).json()["code"] == "AUTH_REFRESH_INVALID"
    assert flows.login(pair["user"]["phone"]).status == 200
    missing = flows.call(
        "admin-users-id",
        "PATCH",
        "/admin/users/nobody",
        body={"role": "user"},
        token=admin,
    )
    assert (missing.status, missing.json()["code"]) == (404, "NOT_FOUND")


def test_admin_routes_refuse_a_user_token(flows: Flows) -> None:
    token = flows.registered()["access_token"]
    listing = flows.call("admin-users-list", "GET", "/admin/users", token=token)
    assert (listing.status, listing.json()["code"]) == (403, "FORBIDDEN")
    user_id = new_phone()
    patch = flows.call(
        "admin-users-id",
        "PATCH",
        f"/admin/users/{user_id}",
        body={"role": "admin"},
        token=token,
    )
    assert (patch.status, patch.json()["code"]) == (403, "FORBIDDEN")


def test_the_change_holds_even_when_ending_sessions_fails(flows: Flows) -> None:
    from app.identity import sessions
    from app.redis_client import get_redis

    admin = flows.admin_token()
    pair = flows.registered()
    user_id = pair["user"]["id"]
    assert flows.me(pair["access_token"]).json()["role"] == "user"  # now cached
    # A session set Redis cannot read as a set: ending the sessions fails.
    get_redis().set(sessions.set_key(user_id), "not a set")
    reply = flows.call(
        "admin-users-id",
        "PATCH",
        f"/admin/users/{user_id}",
        body={"role": "admin", "disabled": True},
        token=admin,
    )
    assert (reply.status, reply.json()["code"]) == (500, "INTERNAL_ERROR")
    # The change was committed and the next request is judged by it, not by the cached
    # profile, though the sessions could not be ended.
    refused = flows.me(pair["access_token"])
    assert (refused.status, refused.json()["code"]) == (403, "ACCOUNT_DISABLED")
    listed = flows.call(
        "admin-users-list",
        "GET",
        "/admin/users",
        query={"phone": pair["user"]["phone"]},
        token=admin,
    ).json()
    assert [(u["id"], u["role"]) for u in listed["items"]] == [(user_id, "admin")]


def test_an_admin_route_given_a_user_id_of_another_shape_is_404_and_changes_nothing(
    flows: Flows,
) -> None:
    """The database compares ids ignoring trailing spaces (PAD SPACE), the sessions and the
    cached profile do not: `<id> ` disabled the row but ended no session and left the cached
    profile enabled, and granted quota the cached profile never showed."""
    pair = flows.registered()
    user_id, token = pair["user"]["id"], pair["access_token"]
    admin = flows.admin_token()
    for variant in (f"{user_id} ", f"{user_id}%20", f"{user_id}  ", user_id.lower()):
        disabled = flows.call(
            "admin-users-id",
            "PATCH",
            f"/admin/users/{variant}",
            body={"disabled": True},
            token=admin,
        )
        assert (disabled.status, disabled.json()["code"]) == (404, "NOT_FOUND"), variant
        granted = flows.call(
            "admin-users-id",
            "POST",
            f"/admin/users/{variant}/quota",
            body={"delta": 5, "reason": "x"},
            token=admin,
        )
        assert (granted.status, granted.json()["code"]) == (404, "NOT_FOUND"), variant
    me = flows.me(token)
    assert me.status == 200 and me.json()["quota"]["balance"] == 0
    listed = flows.call(
        "admin-users-list",
        "GET",
        "/admin/users",
        query={"phone": pair["user"]["phone"]},
        token=admin,
    ).json()["items"]
    assert listed == [me.json()]
