"""Each admin route that changes state records one `admin_actions` row, written with the
change: the admin, the action, its target, what changed and the request id; and one
`admin action` log line with the same fields after the commit."""

from __future__ import annotations

import json
import secrets
from typing import Any

from app.ids import new_id
from tests.support.audit import actions_on
from tests.support.function_url import Reply, call
from tests.support.functions import handler, time_limit_ms
from tests.support.logs import capture_logs
from tests.support.payments import new_plan_id
from tests.support.pipelines import token_for
from tests.support.quota import new_user


class Admin:
    """A signed-in admin calling the admin routes through their functions."""

    def __init__(self) -> None:
        self.id = new_user(role="admin")
        self.token = token_for(self.id)

    def call(self, function: str, method: str, path: str, **kwargs: Any) -> Reply:
        return call(handler(function), method, path, token=self.token, **kwargs)


def recorded_once(target: str, admin: Admin, reply: Reply, action: str) -> dict[str, Any]:
    """The one row recorded for `target`, checked to be `admin`'s `action` of this request."""
    (row,) = actions_on(target)
    assert (row["actor_id"], row["action"]) == (admin.id, action)
    assert row["request_id"] == reply.header("X-Request-Id")
    return row


def test_a_change_of_role_and_state_records_both_before_and_after() -> None:
    admin, user = Admin(), new_user()
    with capture_logs() as logs:
        reply = admin.call(
            "admin-users-id", "PATCH", f"/admin/users/{user}", body={"role": "admin"}
        )
    assert reply.status == 200, reply.body
    row = recorded_once(user, admin, reply, "user.change")
    assert row["changes"] == {"before": {"role": "user"}, "after": {"role": "admin"}}

    (line,) = logs.where(logger="app.audit", message="admin action")
    assert line == {
        **{key: line[key] for key in ("time", "level", "logger", "message")},
        "action_id": row["id"],
        "at": line["at"],
        "actor_id": admin.id,
        "action": "user.change",
        "target": user,
        "changes": row["changes"],
        "request_id": row["request_id"],
        # The invocation's own ids, as on every line it writes: the admin is its caller.
        "function": line["function"],
        "user_id": admin.id,
    }
    assert line["level"] == "info" and line["at"].startswith(row["at"].date().isoformat())

    body = {"role": "user", "disabled": True}
    assert admin.call("admin-users-id", "PATCH", f"/admin/users/{user}", body=body).status == 200
    assert actions_on(user)[1]["changes"] == {
        "before": {"role": "admin", "disabled": False},
        "after": {"role": "user", "disabled": True},
    }


def test_a_patch_that_names_no_field_records_nothing() -> None:
    admin, user = Admin(), new_user()
    assert admin.call("admin-users-id", "PATCH", f"/admin/users/{user}", body={}).status == 200
    assert actions_on(user) == []


def test_a_patch_that_changes_nothing_records_nothing() -> None:
    admin, user = Admin(), new_user()
    body = {"role": "user", "disabled": False}  # what a new user already is
    reply = admin.call("admin-users-id", "PATCH", f"/admin/users/{user}", body=body)
    assert reply.status == 200, reply.body
    assert (reply.json()["id"], reply.json()["role"]) == (user, "user")
    assert actions_on(user) == []
    # A change of one field of two is recorded, with both as they were and are.
    body = {"role": "user", "disabled": True}
    assert admin.call("admin-users-id", "PATCH", f"/admin/users/{user}", body=body).status == 200
    assert [row["changes"] for row in actions_on(user)] == [
        {"before": {"role": "user", "disabled": False}, "after": body}
    ]


def test_a_quota_grant_records_its_delta_the_balance_after_and_its_ledger_entry() -> None:
    admin, user = Admin(), new_user(10)
    reply = admin.call(
        "admin-users-id",
        "POST",
        f"/admin/users/{user}/quota",
        body={"delta": -4, "reason": "refund reversed"},
    )
    assert reply.status == 200, reply.body
    row = recorded_once(user, admin, reply, "quota.grant")
    ledger_id = row["changes"].pop("ledger_id")
    assert row["changes"] == {"delta": -4, "balance_after": 6, "reason": "refund reversed"}
    assert ledger_id and isinstance(ledger_id, str)


def test_a_secret_is_recorded_by_name_and_version_and_its_value_nowhere() -> None:
    admin, name = Admin(), "K_" + secrets.token_hex(6).upper()
    value = "sk-" + secrets.token_urlsafe(24)
    with capture_logs() as logs:
        first = admin.call(
            "admin-secrets-name", "PUT", f"/admin/secrets/{name}", body={"value": value}
        )
        second = admin.call(
            "admin-secrets-name", "PUT", f"/admin/secrets/{name}", body={"value": value + "2"}
        )
    assert (first.status, second.status) == (204, 204)
    rows = actions_on(name)
    assert [(r["action"], r["changes"]) for r in rows] == [
        ("secret.put", {"version": 1}),
        ("secret.put", {"version": 2}),
    ]
    assert [r["request_id"] for r in rows] == [
        first.header("X-Request-Id"),
        second.header("X-Request-Id"),
    ]
    assert len(logs.where(logger="app.audit", target=name)) == 2
    stored = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    assert value not in stored and "enc:" not in stored
    assert value not in logs.text and "enc:" not in logs.text


def test_a_pipeline_save_records_created_then_replaced_and_a_hash_of_the_definition() -> None:
    admin, pipeline = Admin(), "p-" + secrets.token_hex(4)
    steps = [{"id": "a", "type": "sim", "duration_ms": 1}]

    def put(cost: int) -> Reply:
        body = {"name": pipeline, "cost": cost, "steps": steps}
        return admin.call("admin-pipelines-put", "PUT", f"/admin/pipelines/{pipeline}", body=body)

    replies = [put(1), put(1), put(2)]
    assert [r.status for r in replies] == [200, 200, 200], replies[0].body
    rows = actions_on(pipeline)
    assert [(r["actor_id"], r["action"]) for r in rows] == [(admin.id, "pipeline.put")] * 3
    assert [(r["changes"]["created"], r["changes"]["cost"]) for r in rows] == [
        (True, 1),
        (False, 1),
        (False, 2),
    ]
    hashes = [r["changes"]["sha256"] for r in rows]
    assert hashes[0] == hashes[1] != hashes[2] and len(hashes[0]) == 64


def test_a_definition_holding_a_literal_token_is_recorded_by_its_hash_only() -> None:
    """A header may hold its token as it is, not as a stored secret: neither the row nor
    any log line of the save holds the definition, only its hash."""
    admin, pipeline = Admin(), "p-" + secrets.token_hex(4)
    token = "tok-" + secrets.token_urlsafe(24)
    call_step = {
        "id": "a",
        "type": "http",
        "url": "http://127.0.0.1/",
        "headers": {"Authorization": f"Bearer {token}"},
    }
    body = {"name": pipeline, "cost": 1, "steps": [call_step]}
    with capture_logs() as logs:
        reply = admin.call("admin-pipelines-put", "PUT", f"/admin/pipelines/{pipeline}", body=body)
    assert reply.status == 200, reply.body
    row = recorded_once(pipeline, admin, reply, "pipeline.put")
    assert set(row["changes"]) == {"created", "cost", "enabled", "sha256"}
    assert token not in json.dumps({k: str(v) for k, v in row.items()})
    assert logs.where(logger="app.audit", target=pipeline) and token not in logs.text


def test_a_plan_save_records_created_then_replaced_and_what_it_set() -> None:
    admin, plan = Admin(), new_plan_id()
    body = {"name": "month", "price_fen": 990, "duration_days": 30, "quota": 100, "enabled": True}
    first = admin.call("admin-plans-put", "PUT", f"/admin/plans/{plan}", body=body)
    second = admin.call(
        "admin-plans-put", "PUT", f"/admin/plans/{plan}", body={**body, "price_fen": 1290}
    )
    assert (first.status, second.status) == (200, 200), first.body
    assert [r["changes"] for r in actions_on(plan)] == [
        {"created": True, **body},
        {"created": False, **body, "price_fen": 1290},
    ]


def test_a_job_run_records_its_name_and_report() -> None:
    admin = Admin()
    before = len(actions_on("saga-sweeper"))
    with capture_logs() as logs:
        reply = admin.call(
            "admin-jobs-run",
            "POST",
            "/admin/jobs/saga-sweeper",
            time_limit_ms=time_limit_ms("admin-jobs-run"),
        )
    assert reply.status == 200, reply.body
    # Logged as a timer's run is, and its invocation's line names the job.
    (line,) = logs.where(message="job run", job="saga-sweeper")
    assert (line["trigger"], line["outcome"], line["level"]) == ("admin", "ok", "info")
    assert line["duration_ms"] >= 0 and line["report"]["failed"] == 0
    assert logs.where(message="invocation", job="saga-sweeper", status=200)
    rows = actions_on("saga-sweeper")
    assert len(rows) == before + 1
    row = rows[-1]
    assert (row["actor_id"], row["action"]) == (admin.id, "job.run")
    assert row["request_id"] == reply.header("X-Request-Id")
    report = reply.json()
    del report["job"]
    assert row["changes"] == {"report": report}


def test_refused_requests_record_nothing() -> None:
    admin, user = Admin(), new_user(1)
    unknown = new_id()
    refused = [
        admin.call("admin-users-id", "PATCH", f"/admin/users/{unknown}", body={"role": "user"}),
        admin.call("admin-users-id", "PATCH", f"/admin/users/{user}", body={"role": "root"}),
        admin.call(
            "admin-users-id",
            "POST",
            f"/admin/users/{user}/quota",
            body={"delta": -2, "reason": "too much"},
        ),
        admin.call("admin-secrets-name", "PUT", "/admin/secrets/lower", body={"value": "v"}),
        admin.call(
            "admin-pipelines-put",
            "PUT",
            "/admin/pipelines/p-refused",
            body={"name": "x", "cost": 1, "steps": []},
        ),
        admin.call("admin-plans-put", "PUT", "/admin/plans/p-refused", body={"name": "x"}),
        admin.call("admin-jobs-run", "POST", "/admin/jobs/no-such-job"),
    ]
    assert [r.status for r in refused] == [404, 422, 422, 422, 422, 422, 404], [
        r.body for r in refused
    ]
    for target in (unknown, user, "lower", "p-refused", "no-such-job"):
        assert actions_on(target) == [], target
    # Not an admin: 403, before anything is asked of the domain.
    other = call(
        handler("admin-users-id"),
        "PATCH",
        f"/admin/users/{user}",
        body={"role": "admin"},
        token=token_for(new_user()),
    )
    assert other.status == 403 and actions_on(user) == []
