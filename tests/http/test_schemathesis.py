"""Schemathesis over every operation of the OpenAPI document (shared/app/api/openapi.json):
generated requests, valid and invalid, sent over HTTP to the local cloud (every function
behind the custom domain's path mapping), against a MariaDB database of its own and the
run's Redis, signed in as real accounts made through the API.

Every answer must hold to the contract:
- no 5xx, whatever a client sends (a 503 is a dependency failing, not throttling: our
  throttles answer 429, and their limits are raised here so requests reach the handlers);
- every error is the envelope `{"code", "message", "request_id"}` with a code of ErrorCode,
  the status that code has, and the request id of the `X-Request-Id` header;
- a refused request (4xx) changes nothing in the database;
- schemathesis' own checks: the status is documented, so are the content type and the body
  (its schema), a 405 names the allowed methods, an operation that declares auth refuses a
  request without it; in the stateful run, a created task can be read back.
Two of its checks are off, because the document cannot say what they need:
`positive_data_acceptance` (a cursor is valid only if the API gave it out; some bounds are in
bytes, or in words JSON Schema lacks, such as "1-32 characters after trimming") and
`negative_data_rejection` (JSON values are read leniently, `0` as `false`; query parameters
an operation does not name are ignored, as most frameworks do).

Reproducible: a fixed seed (the stateful run: Hypothesis' derandomized one), no example
database, a bounded number of examples per operation and of scenarios.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis import Case
from sqlalchemy import text, update

from app import profiles
from app.api import docs
from app.db.tables import metadata, users
from app.db.transaction import transaction
from app.errors import ErrorCode
from app.identity import sessions, tokens
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support import log_guard
from tests.support.database import migrated_database
from tests.support.functions import ROOT
from tests.support.local_cloud import local_cloud
from tests.support.providers import all_providers
from tests.support.quota import assert_ledger_consistent
from tests.support.sessions import is_live
from tests.support.settings import app_engine_under

SEED = 20261206
EXAMPLES = 30  # per operation and phase (the coverage phase adds its boundary cases)
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_path(docs.DOCUMENT, config=CONFIG)
# As schemathesis runs its state machines: no shrinking (a shorter sequence replayed against
# a server whose state has moved on is not the same test) and no health checks.
STATEFUL = settings(
    max_examples=40,
    stateful_step_count=8,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
PASSWORD = "fuzz horse 9"
log_guard.remember(PASSWORD)
WORKER = "pipeline-worker"
LIMITS_RAISED = {
    "SMS_COOLDOWN_S": "1",
    "SMS_PER_PHONE_PER_DAY": "1000000",
    "SMS_PER_IP_PER_HOUR": "1000000",
    "SMS_CODE_FAILURES_PER_IP_PER_HOUR": "1000000",
    "LOGIN_MAX_FAILURES": "1000000",
    "LOGIN_FAILURES_PER_IP_PER_HOUR": "1000000",
    "LOGIN_PER_PHONE_PER_HOUR": "1000000",
}
# These end sessions: each call gets a session of its own, of an account kept for them, so
# the accounts the other operations use stay signed in.
SESSION_ENDERS = ("/auth/logout", "/auth/logout-all")


@dataclass
class Fuzz:
    url: str
    user: dict[str, Any]  # holds quota
    admin: dict[str, Any]
    leaver: dict[str, Any]  # the account whose sessions the logout operations end
    user_token: str = ""
    admin_token: str = ""

    def restore(self) -> None:
        """The user and the admin as the run needs them, whatever a generated request did
        to them (`PATCH /admin/users/{id}` may demote, promote or disable either, which ends
        their sessions): their rows put back, their cached profiles dropped, and a live
        session each."""
        with transaction() as tx:
            for account, role in ((self.user, "user"), (self.admin, "admin")):
                tx.execute(
                    update(users)
                    .where(users.c.id == account["id"])
                    .values(role=role, disabled=False)
                )
        for account in (self.user, self.admin):
            profiles.forget(account["id"])
        for name, account in (("user_token", self.user), ("admin_token", self.admin)):
            live = getattr(self, name) and is_live(
                account["id"], tokens.decode(getattr(self, name), "access")["sid"]
            )
            if not live:
                pair = sessions.start(account["id"], role=account["role"], phone=account["phone"])
                setattr(self, name, pair.access_token)

    def headers_for(self, case: Case) -> dict[str, str]:
        security = case.operation.definition.raw.get("security") or []
        if not any("bearer" in scheme for scheme in security):
            return {}
        path = case.operation.path
        if path in SESSION_ENDERS:
            token = sessions.start(
                self.leaver["id"], role=self.leaver["role"], phone=self.leaver["phone"]
            ).access_token
        else:
            token = self.admin_token if path.startswith("/admin/") else self.user_token
        return {"Authorization": f"Bearer {token}"}


def _phone() -> str:
    return "+86139" + f"{secrets.randbelow(10**8):08d}"


def _register(url: str, tencent: FakeTencentCloud, phone: str) -> dict[str, Any]:
    """A new account through /auth/sms-code and /auth/register; its token pair."""
    sent = requests.post(
        f"{url}/auth/sms-code", json={"phone": phone, "purpose": "register"}, timeout=30
    )
    assert sent.status_code == 200, sent.text
    code = next(
        str(call.params["TemplateParamSet"][0])
        for call in reversed(tencent.calls_of("SendSms"))
        if phone in call.params["PhoneNumberSet"]
    )
    body = {"phone": phone, "password": PASSWORD, "code": code}
    reply = requests.post(f"{url}/auth/register", json=body, timeout=30)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


@pytest.fixture(scope="module")
def fuzz(redis_db: Any) -> Iterator[Fuzz]:
    """The local cloud on a database of its own (what the fuzzer creates stays out of the
    other tests), with a user holding quota, an admin and the leaver."""
    server, _, run_db = os.environ["DATABASE_URL"].rpartition("/")
    name = f"{run_db}_fuzz"
    admin_phone = _phone()
    redis_db.flushdb()
    with all_providers() as (tencent, providers):
        env = {
            "DATABASE_URL": f"{server}/{name}",
            "BCRYPT_COST": "10",
            "ADMIN_PHONES": admin_phone,
            **LIMITS_RAISED,
            **providers,
        }
        with (
            app_engine_under(**env),
            migrated_database(server, name),
            local_cloud((ROOT / "serverless.yml",), timers=False, queue_backoff_s=0.05) as cloud,
        ):
            # Tasks stay queued: what a generated pipeline would do, upstream and for as long
            # as it says, is the runner's tests' business, and must not outlive this run.
            cloud.broker.unsubscribe(WORKER, WORKER)
            user = _register(cloud.url, tencent, _phone())
            admin = _register(cloud.url, tencent, admin_phone)
            leaver = _register(cloud.url, tencent, _phone())
            assert admin["user"]["role"] == "admin"
            funded = requests.post(
                f"{cloud.url}/admin/users/{user['user']['id']}/quota",
                json={"delta": 1000, "reason": "fuzzing"},
                headers={"Authorization": f"Bearer {admin['access_token']}"},
                timeout=30,
            )
            assert funded.status_code == 200, funded.text
            fuzz = Fuzz(cloud.url, user["user"], admin["user"], leaver["user"])
            fuzz.restore()
            yield fuzz
            cloud.broker.drop_parked(WORKER)
            assert_ledger_consistent()
    redis_db.flushdb()  # cached pipelines and profiles of the fuzz database


# -- checks of our own ----------------------------------------------------------------

ERROR_CODES = {code.value for code in ErrorCode}


# Webhooks answer in their provider's words (API.md, Notifications), not the envelope.
PROVIDER_WORDS = {"/payments/wechat/notify"}
# What the local cloud's HTTP server (uvicorn, h11) answers, itself, to a request it cannot
# parse (a generated header such as `content-length: ^Lr`, or a value with NUL, which
# requests sends as given): such a request never reaches the gateway or a function, as on
# SCF, where the domain refuses it, so none of the checks is about it.
UNPARSED = (400, "Invalid HTTP request received.")


def unparsed(response: Any) -> bool:
    return (response.status_code, response.text) == UNPARSED


def error_envelope(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every error is the contract's envelope, with a code of ErrorCode and its status."""
    if response.status_code < 400 or response.request.method == "HEAD":
        return None
    body = response.json()
    if case.operation.path in PROVIDER_WORDS and response.status_code in (400, 401):
        assert body.get("code") == "FAIL" and body.get("message"), body
        return None
    assert isinstance(body, dict), body
    assert body.get("code") in ERROR_CODES, body
    assert ErrorCode(body["code"]).status == response.status_code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert [body.get("request_id")] == response.headers.get("x-request-id"), body
    return None


def database_state() -> list[Any]:
    """A checksum of every table: what a refused request must leave as it was. Nothing else
    writes meanwhile (requests go one at a time, and tasks stay queued)."""
    names = ", ".join(f"`{table.name}`" for table in metadata.sorted_tables)
    with transaction() as tx:
        return list(tx.execute(text(f"CHECKSUM TABLE {names}")).all())


def unchanged_since(before: list[Any]) -> Callable[[Any, Any, Case], bool | None]:
    def nothing_changed(ctx: Any, response: Any, case: Case) -> bool | None:
        """A refused request (4xx) changes nothing in the database."""
        if 400 <= response.status_code < 500:
            assert database_state() == before, "a refused request changed the database"
        return None

    return nothing_changed


# -- the runs ---------------------------------------------------------------------------


@schema.parametrize()
def test_every_operation_holds_to_the_contract(case: Case, fuzz: Fuzz) -> None:
    fuzz.restore()
    headers = fuzz.headers_for(case)
    before = database_state()
    response = case.call(base_url=fuzz.url, headers=headers)
    if unparsed(response):
        return
    case.validate_response(
        response,
        headers=headers,
        additional_checks=[error_envelope, unchanged_since(before)],
    )


def test_sequences_of_linked_operations_hold_to_the_contract(fuzz: Fuzz) -> None:
    """Operations chained through the links schemathesis infers from the document: a task
    created, then read, listed and cancelled; a pipeline saved, then named by a new task; a
    user listed, then changed and given quota."""
    failures: list[str] = []

    class Workflow(schema.as_state_machine()):
        before: list[Any] = []

        def setup(self) -> None:
            fuzz.restore()  # each scenario starts from the accounts as the run made them

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": fuzz.url, "headers": fuzz.headers_for(case)}

        def call(self, case: Case, **kwargs: Any) -> Any:
            self.before = database_state()
            return case.call(**kwargs)

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            if unparsed(response):
                return
            try:
                case.validate_response(
                    response,
                    headers=kwargs.get("headers"),
                    additional_checks=[error_envelope, unchanged_since(self.before)],
                    transport_kwargs=kwargs,
                )
            except Exception as failed:
                failures.append(f"{type(failed).__name__}: {failed}")
                raise

    try:
        Workflow.run(settings=STATEFUL)
    except Flaky:
        # The server's state moves on from one scenario to the next (tasks pile up, quota runs
        # down), so a sequence Hypothesis draws again can meet other answers and take other
        # rules, which it calls flaky. That says nothing about the API: as in schemathesis' own
        # runner, what counts is a check that failed when it ran.
        assert not failures, "\n\n".join(failures)
