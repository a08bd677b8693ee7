"""No 5xx for anything a client can send, on every route of every HTTP function.

Each function's real `main_handler` (as serverless.yml lists them) is driven with the
malformed requests of `tests.support.malformed`: bodies that are not JSON or hold a wrong
value at each field, odd path parameters, query parameters and headers, forged and broken
tokens, methods the route does not serve. Signed in as a user, and as an admin on admin
routes, so requests get past auth. Every answer must be below 500 (the dependencies are up:
a 503 here is a failure too), an error must be the envelope with a code of ErrorCode and
its status (webhooks answer in their provider's words), and no answer may show a trace.

Deterministic: the requests are drawn from a fixed seed per route, and nothing depends on
the order in which routes run. Routes are read from the functions themselves, so a new
route is fuzzed as soon as a function serves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.api import all_routes
from app.errors import ErrorCode
from app.http import http_handler
from app.http.routing import Route
from infra import manifest
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.malformed import Probe, odd_authorizations, probes
from tests.support.pipelines import token_for
from tests.support.providers import all_providers
from tests.support.quota import new_user
from tests.support.settings import settings_env

SEED = 20261207
PER_FIELD = 6  # odd values tried at each body field and query parameter
ERROR_CODES = {code.value for code in ErrorCode}
# Webhooks answer in their provider's words (API.md, Notifications), not the envelope.
PROVIDER_WORDS = {"/payments/wechat/notify", "/payments/alipay/notify"}
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages", '.py", line')
LIMITS_RAISED = {
    "SMS_COOLDOWN_S": "1",
    "SMS_PER_PHONE_PER_DAY": "1000000",
    "SMS_PER_IP_PER_HOUR": "1000000",
    "SMS_GLOBAL_PER_HOUR": "1000000",
    "SMS_CODE_FAILURES_PER_IP_PER_HOUR": "1000000",
    "LOGIN_MAX_FAILURES": "1000000",
    "LOGIN_FAILURES_PER_IP_PER_HOUR": "1000000",
    "LOGIN_PER_PHONE_PER_HOUR": "1000000",
    "WECHAT_LOGIN_PER_IP_PER_HOUR": "1000000",
    "TASKS_PER_USER_PER_HOUR": "1000000",
    "UPLOADS_PER_USER_PER_HOUR": "1000000",
    "BCRYPT_COST": "10",
}


def _http_routes() -> list[tuple[str, Route]]:
    found = []
    for spec in manifest.load().http_functions:
        for route in getattr(handler(spec.name), "routes", ()):
            found.append((spec.name, route))
    return found


ROUTES = _http_routes()


# A body each route takes, which the odd bodies change one field at a time (so the rest of
# the body passes and the odd field is what is judged); a route not named here gets a body
# guessed from its model.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/auth/sms-code": {"phone": "13800138000", "purpose": "login"},
    "/auth/register": {"phone": "13800138001", "password": "fuzz horse 9", "code": "123456"},
    "/auth/login": {"phone": "13800138001", "password": "fuzz horse 9"},
    "/auth/wechat-login": {"code": "fuzz-code", "nickname": "fuzz", "invite_code": "ABCD2345"},
    "/admin/users/{id}/quota": {"delta": 5, "reason": "fuzzing"},
    "/admin/secrets/{name}": {"value": "s3cret"},
    "/admin/pipelines/{id}": {
        "name": "Fuzz",
        "cost": 1,
        "steps": [{"id": "s1", "type": "sim", "duration_ms": 0}],
    },
    "/admin/plans/{id}": {"name": "Fuzz", "price_fen": 100, "duration_days": 30, "quota": 10},
    "/tasks": {"pipeline_id": "fuzz-pipeline", "input": {"prompts": ["a"]}},
    "/uploads": {"content_type": "image/png", "size_bytes": 100},
    "/orders": {"plan_id": "fuzz-plan", "channel": "wechat"},
    "/users/me": {"nickname": "fuzz", "gender": "female"},
}


@dataclass
class Accounts:
    user_id: str
    admin_id: str
    target_id: str  # the user the admin routes act on: the others stay as they are
    task_id: str = ""
    order_id: str = ""

    def token(self, route: Route) -> str:
        """A fresh session each time: a probe may end one (logout), and none may end the
        next probe's."""
        if route.path.startswith("/admin/"):
            return token_for(self.admin_id, "admin")
        return token_for(self.user_id)


@pytest.fixture(scope="module")
def fakes() -> Iterator[None]:
    """The providers behind the routes, so that well-formed parts of a request reach them,
    and the limits raised so that requests reach the handlers rather than a 429."""
    with all_providers() as (_, env), settings_env(**env, **LIMITS_RAISED):
        yield


@pytest.fixture(scope="module")
def accounts(fakes: None) -> Accounts:
    """The users, and a pipeline, a plan, a task and an order of the user's, made through
    the API, for the routes that name one."""
    found = Accounts(new_user(1000), new_user(role="admin"), new_user())
    admin = token_for(found.admin_id, "admin")
    for path in ("/admin/pipelines/{id}", "/admin/plans/{id}"):
        made = call(
            handler(route_function(path)),
            "PUT",
            path.replace("{id}", fill_for(found, path)["id"]),
            body=VALID_BODIES[path],
            token=admin,
        )
        assert made.status == 200, made.body
    user = token_for(found.user_id)
    for path in ("/tasks", "/orders"):
        made = call(
            handler(route_function(path)), "POST", path, body=VALID_BODIES[path], token=user
        )
        assert made.status == 201, made.body
        setattr(found, "task_id" if path == "/tasks" else "order_id", made.json()["id"])
    return found


def route_function(path: str) -> str:
    return next(name for name, route in ROUTES if route.path == path)


def fill_for(accounts: Accounts, path: str) -> dict[str, str]:
    """Path parameters that name something real, so the rest is judged past the 404."""
    ids = {
        "/admin/pipelines/": "fuzz-pipeline",
        "/admin/plans/": "fuzz-plan",
        "/tasks/": accounts.task_id,
        "/orders/": accounts.order_id,
    }
    entity = next((v for k, v in ids.items() if path.startswith(k)), accounts.target_id)
    return {"id": entity, "name": "FUZZ_SECRET", "asset": "swagger-ui.css"}


def check(reply: Reply, route: Route, probe: Probe) -> list[str]:
    """What is wrong with one answer (nothing, usually)."""
    problems = []
    if reply.status >= 500:
        problems.append(f"status {reply.status}")
    if any(mark in reply.body for mark in TRACE_MARKS) and route.content_type is None:
        problems.append("a trace in the body")
    if reply.status >= 400 and probe.method.upper() != "HEAD" and reply.body:
        if route.path in PROVIDER_WORDS and probe.path == route.path:
            return problems
        try:
            body = json.loads(reply.body)
        except ValueError:
            return [*problems, "an error body that is not JSON"]
        if not isinstance(body, dict) or body.get("code") not in ERROR_CODES:
            problems.append("an error without a code of ErrorCode")
        elif ErrorCode(body["code"]).status != reply.status:
            problems.append(f"{body['code']} answered with status {reply.status}")
    return problems


def fuzz_route(name: str, route: Route, accounts: Accounts, per_field: int) -> Iterator[str]:
    """Every failure of one route's probes, as a line naming the probe."""
    app = http_handler(*handler(name).routes)  # built under the fixture's settings
    authorizations = odd_authorizations(token_for(accounts.user_id), accounts.user_id)
    for probe in probes(
        route,
        SEED,
        per_field=per_field,
        fill=fill_for(accounts, route.path),
        authorizations=authorizations,
        valid_body=VALID_BODIES.get(route.path),
    ):
        headers = {"content-type": "application/json", **probe.headers}
        token = None if "authorization" in headers else accounts.token(route)
        reply = call(
            app,
            probe.method,
            probe.path,
            raw_body=probe.raw_body,
            headers=headers,
            query=probe.query,
            base64_body=probe.base64_body,
            token=token,
        )
        for problem in check(reply, route, probe):
            yield f"{route.method} {route.path} [{probe.what}]: {problem}: {reply.body[:300]}"


@pytest.mark.parametrize(("name", "route"), ROUTES, ids=[f"{r.method} {r.path}" for _, r in ROUTES])
def test_no_malformed_request_is_a_server_error(
    name: str, route: Route, accounts: Accounts
) -> None:
    failures = list(fuzz_route(name, route, accounts, PER_FIELD))
    assert not failures, "\n".join(failures)


def test_every_route_is_fuzzed() -> None:
    """The functions serve every route of the table the document is built from, each once:
    none is left out of the fuzzing."""
    served = {(route.method, route.path) for _, route in ROUTES}
    assert served == {(route.method, route.path) for route in all_routes()}
    assert len(served) == len(ROUTES)
