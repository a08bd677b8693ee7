"""PUT /admin/pipelines/{id} validation and GET /pipelines from the configuration cache."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.lists import BAD_QUERIES, cursor_of, every_page, get, refused
from tests.support.pipelines import token_for
from tests.support.quota import new_user
from tests.support.settings import settings_env


def put(pipeline_id: str, body: Any, role: str = "admin") -> Reply:
    token = token_for(new_user(role=role), role=role)
    return call(
        handler("admin-pipelines-put"),
        "PUT",
        f"/admin/pipelines/{pipeline_id}",
        body=body,
        token=token,
    )


def listed() -> list[dict[str, Any]]:
    return every_page("pipelines-list", "/pipelines", 100)


def definition(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Poster",
        "description": "draft, variants, pick",
        "cost": 3,
        "enabled": True,
        "steps": [
            {
                "id": "draft",
                "type": "http",
                "url": "http://127.0.0.1:9/draft",
                "timeout_s": 30,
                "retries": 2,
            },
            {
                "id": "variants",
                "type": "fork",
                "for_each": "input.prompts",
                "step": {"type": "http", "url": "http://localhost:9/render"},
                "min_success": 1,
            },
            {"id": "pick", "type": "sim", "duration_ms": 10},
        ],
    }
    body.update(overrides)
    return body


def test_the_seeded_demo_pipeline_is_listed() -> None:
    demo = next(p for p in listed() if p["id"] == "demo")
    assert demo["cost"] == 1 and demo["name"] == "Demo"


def test_put_saves_and_the_list_shows_it_at_once_then_hides_it_when_disabled() -> None:
    before = listed()  # fills the cache
    reply = put("poster", definition())
    assert reply.status == 200, reply.body
    saved = reply.json()
    assert saved["id"] == "poster" and saved["steps"][1]["min_success"] == 1
    assert saved["steps"][0]["retries"] == 2
    now = listed()
    assert {
        "id": "poster",
        "name": "Poster",
        "description": "draft, variants, pick",
        "cost": 3,
    } in now
    assert len(now) == len([p for p in before if p["id"] != "poster"]) + 1

    assert put("poster", definition(enabled=False, cost=5)).status == 200
    assert "poster" not in {p["id"] for p in listed()}


def test_the_list_is_served_from_the_cache() -> None:
    from app import cache
    from app.pipeline.catalog import LIST_CACHE_KEY

    cached = {"id": "from-cache", "name": "C", "description": "", "cost": 0}
    cache.invalidate(LIST_CACHE_KEY)
    cache.get_or_set(LIST_CACHE_KEY, lambda: [cached], 60)
    assert listed() == [cached]  # not read from the database
    assert put("poster3", definition()).status == 200  # invalidates
    assert "poster3" in {p["id"] for p in listed()}


def some_pipelines(count: int) -> list[str]:
    """`count` new pipelines, their ids mixing `_`, `-`, letters and digits."""
    prefix = f"pg-{secrets.token_hex(4)}"
    suffixes = ["b", "_a", "-a", "a", "0", "a_b", "ab", "a-b"]
    ids = [f"{prefix}{suffixes[i % len(suffixes)]}{i}" for i in range(count)]
    for pipeline_id in ids:
        assert put(pipeline_id, definition()).status == 200
    return ids


def test_paging_lists_every_pipeline_once_by_id() -> None:
    ours = some_pipelines(23)
    for limit in (1, 4, 20, 100):
        ids = [p["id"] for p in every_page("pipelines-list", "/pipelines", limit)]
        assert ids == sorted(set(ids)) and set(ours) <= set(ids), limit


def test_the_page_size_is_20_by_default_and_a_cursor_outlives_its_pipeline() -> None:
    ours = some_pipelines(21)
    page = get("pipelines-list", "/pipelines").json()
    assert len(page["items"]) == 20 and page["next_cursor"] is not None
    rest = get("pipelines-list", "/pipelines", cursor=page["next_cursor"], limit="100").json()
    assert page["items"] + rest["items"] == listed()[:120]

    assert put(ours[0], definition(enabled=False)).status == 200
    after = get("pipelines-list", "/pipelines", cursor=cursor_of([ours[0]]), limit="100").json()
    later = [p["id"] for p in listed() if p["id"] > ours[0]]
    assert [p["id"] for p in after["items"]] == later[:100]


def test_a_cached_list_out_of_order_is_paged_in_order() -> None:
    """The pager orders what it pages: a list cached in another order (by an earlier
    deploy's loader) still pages every item once."""
    from app import cache
    from app.pipeline.catalog import LIST_CACHE_KEY

    cached = [{"id": i, "name": i, "description": "", "cost": 0} for i in ("c", "a_", "b", "a")]
    cache.invalidate(LIST_CACHE_KEY)
    cache.get_or_set(LIST_CACHE_KEY, lambda: cached, 60)
    ids = ["a", "a_", "b", "c"]
    assert [p["id"] for p in listed()] == ids
    assert [p["id"] for p in every_page("pipelines-list", "/pipelines", 1)] == ids
    cache.invalidate(LIST_CACHE_KEY)


@pytest.mark.parametrize(("query", "parameter"), BAD_QUERIES)
def test_bad_paging_parameters_are_422(query: dict[str, str], parameter: str) -> None:
    assert refused(get("pipelines-list", "/pipelines", **query), parameter)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (definition(steps=[{"id": "a", "type": "sim"}, {"id": "a", "type": "sim"}]), "used twice"),
        (definition(steps=[{"id": "f", "type": "fork", "for_each": "input.x"}]), "fork"),
        (
            definition(
                steps=[
                    {
                        "id": "f",
                        "type": "fork",
                        "branches": [{"type": "sim"}],
                        "step": {"type": "sim"},
                    }
                ]
            ),
            "fork",
        ),
        (
            definition(
                steps=[{"id": "f", "type": "fork", "branches": [{"type": "sim"}], "min_success": 2}]
            ),
            "min_success",
        ),
        (
            definition(
                steps=[{"id": "f", "type": "fork", "for_each": "prompts", "step": {"type": "sim"}}]
            ),
            "for_each",
        ),
        (
            definition(
                steps=[
                    {
                        "id": "f",
                        "type": "fork",
                        "for_each": "input.p",
                        "step": {"type": "fork", "for_each": "input.q"},
                    }
                ]
            ),
            "step",
        ),
        (
            definition(steps=[{"id": "a", "type": "http", "url": "http://evil.example/x"}]),
            "PIPELINE_ALLOWED_HOSTS",
        ),
        (
            definition(
                steps=[{"id": "a", "type": "http", "url": "http://127.0.0.1.evil.example/"}]
            ),
            "PIPELINE_ALLOWED_HOSTS",
        ),
        (definition(steps=[{"id": "a", "type": "http", "url": "ftp://127.0.0.1/x"}]), "http"),
        # urlsplit and urllib3 (what requests connects with) read these hosts differently
        *(
            (definition(steps=[{"id": "a", "type": "http", "url": url}]), "url")
            for url in (
                "http://evil.example\\@127.0.0.1/",
                "http://evil.example\\@localhost/",
                "http://127.0.0.1:80\\@evil.example/",
                "http://user@evil.example@localhost/",
                "http://evil.example:80@localhost:80/",
                "http://localhost#@evil.example/",
                "http://evil.example%5C@localhost/",
                "http://localhost\t.evil.example/",
                "http://evil.example\x00@localhost/",
                " http://localhost/",
            )
        ),
        (definition(steps=[{"id": "a", "type": "http", "url": "http://127.0.0.1:99999/"}]), "port"),
        # a call longer than the worker function's own timeout could never be answered
        (
            definition(
                steps=[{"id": "a", "type": "http", "url": "http://127.0.0.1/", "timeout_s": 121}]
            ),
            "timeout_s",
        ),
        (
            definition(
                steps=[
                    {
                        "id": "a",
                        "type": "http",
                        "url": "http://127.0.0.1/",
                        "headers": {"X-Token": "a", "x-token": "b"},
                    }
                ]
            ),
            "given twice",
        ),
        (definition(steps=[{"id": "a", "type": "teleport"}]), "type"),
        (definition(steps=[{"id": "a", "type": "sim", "retires": 3}]), "retires"),
        (definition(steps=[]), "steps"),
        (definition(cost=-1), "cost"),
        ({"name": "x"}, "cost"),
    ],
)
def test_invalid_definitions_are_422_and_change_nothing(body: dict[str, Any], where: str) -> None:
    reply = put("broken", body)
    assert reply.status == 422, reply.body
    assert reply.json()["code"] == "VALIDATION_ERROR"
    assert where in reply.body
    assert "broken" not in {p["id"] for p in listed()}


def test_hosts_are_matched_by_name_from_the_setting() -> None:
    with settings_env(PIPELINE_ALLOWED_HOSTS="ai.example, Render.Example"):
        ok = definition(steps=[{"id": "a", "type": "http", "url": "https://RENDER.example:8443/x"}])
        assert put("hosted", ok).status == 200
        assert put("hosted", definition()).status == 422  # 127.0.0.1 is no longer allowed


def test_an_entry_with_a_port_allows_that_port_only() -> None:
    def http_to(url: str) -> dict[str, Any]:
        return definition(steps=[{"id": "a", "type": "http", "url": url}])

    with settings_env(PIPELINE_ALLOWED_HOSTS="ai.example:8443, [2001:db8::7]:443, any.example"):
        assert put("ported", http_to("https://ai.example:8443/x")).status == 200
        for refused in ("https://ai.example/x", "http://ai.example:8444/x"):
            reply = put("ported", http_to(refused))
            assert reply.status == 422 and "PIPELINE_ALLOWED_HOSTS" in reply.body, refused
        assert put("ported", http_to("https://[2001:db8::7]/x")).status == 200
        assert put("ported", http_to("http://[2001:db8::7]/x")).status == 422
        assert put("ported", http_to("http://any.example:1234/x")).status == 200


@pytest.mark.parametrize("entry", ["ai.example:0", "ai.example:http", "ai.example/x", "[::1"])
def test_a_malformed_allow_list_entry_stops_the_settings_from_loading(entry: str) -> None:
    from pydantic import ValidationError

    from app.config import get_settings

    with (
        settings_env(PIPELINE_ALLOWED_HOSTS=f"ok.example,{entry}"),
        pytest.raises(ValidationError, match="pipeline_allowed_hosts"),
    ):
        get_settings()


def test_the_host_checked_is_the_host_called() -> None:
    from urllib3.util import parse_url

    from app.pipeline.definition import HttpCall

    for url, key in (
        ("http://LocalHost:9/x?a=b", "localhost:9"),
        ("https://127.0.0.1/x", "127.0.0.1:443"),
        ("http://127.0.0.1/x#frag", "127.0.0.1:80"),
    ):
        step = HttpCall.model_validate({"type": "http", "url": url})
        assert step.host_key == key
        assert parse_url(url).host == key.rsplit(":", 1)[0]


def test_a_bad_pipeline_id_is_422_and_non_admins_are_403() -> None:
    assert put("Bad Id!", definition()).status == 422
    reply = put("poster2", definition(), role="user")
    assert reply.status == 403 and reply.json()["code"] == "FORBIDDEN"


def test_a_fork_with_more_branches_than_pipeline_max_branches_is_422() -> None:
    sim = {"type": "sim", "duration_ms": 0}
    fork = {"id": "f", "type": "fork", "branches": [sim] * 100, "cost_per_branch": 1}
    assert put("p-max-branches", definition(steps=[fork])).status == 200
    reply = put("p-max-branches", definition(steps=[{**fork, "branches": [sim] * 101}]))
    assert reply.status == 422
    assert "PIPELINE_MAX_BRANCHES" in str(reply.json()["details"])
    negative = put("p-max-branches", definition(steps=[{**fork, "cost_per_branch": -1}]))
    assert negative.status == 422


def test_branches_forks_too_wide_for_any_task_to_show_are_422() -> None:
    """Four `branches` forks of 100 make 404 steps and branches, more than a task's view
    can show in one SCF answer with every output in COS (app.storage.shares): every task
    would be refused, so the definition is. `for_each` forks count when a task is made."""
    sim = {"type": "sim", "duration_ms": 0}
    forks = [{"id": f"f{n}", "type": "fork", "branches": [sim] * 100} for n in range(4)]
    assert put("p-wide", definition(steps=forks[:3])).status == 200
    reply = put("p-wide", definition(steps=forks))
    assert reply.status == 422
    [detail] = reply.json()["details"]
    assert "make 404 steps and branches" in detail["msg"] and "one answer" in detail["msg"]
    step = {"type": "http", "url": "http://localhost:9/render"}
    each = [{"id": f"e{n}", "type": "fork", "for_each": "input.x", "step": step} for n in range(9)]
    assert put("p-wide-each", definition(steps=each)).status == 200
