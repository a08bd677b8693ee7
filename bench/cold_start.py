"""Cold start per HTTP function: the import, the import plus a first real request, and the
peak memory of a fresh interpreter, against a minimal FastAPI + Mangum app measured side by
side in the same run.

    PYTHONPATH=shared:. .venv/bin/python bench/cold_start.py [--runs 11] [--json FILE] [name ...]

For every function whose index.py wraps `http_handler` (the timer, queue and db-migrate
functions are listed and skipped), and for the anchor app, each run is a fresh child
interpreter that measures itself:

- import: `import index`;
- first call: from before `import index` to after the first `main_handler(event, context)`
  returns, that is the import plus the first invocation;
- peak RSS: the child's peak resident memory after the first call (VmHWM, see CHILD).

Targets take turns within each run (anchor, floor, then every function), so drift on the
machine spreads over all of them; one untimed run first fills the .pyc caches. Printed:
medians, and each one's ratio to the anchor's median of the same measure. The floor is an
index.py that only imports the libraries a database function's first request needs (pydantic,
SQLAlchemy and its MySQL dialect, PyMySQL, redis-py, PyJWT), in the layer's venv: what no
function using them can start below.

The first invocation is a realistic request of the function's route (`PROBES`), answered
with the expected status (a 2xx; the fallback's 404) or the bench stops with the response.
Children run with an SCF instance's settings pointed at local services: a scratch MariaDB
database created and migrated here (dropped at the end), Redis database 13
(BENCH_REDIS_URL), and the project's protocol fakes of the Tencent Cloud API (SMS sends,
SCF asynchronous invocations), COS, the WeChat API, WeChat Pay and Alipay, served from this
process. What the requests need (users, sessions, tasks, SMS codes, a plan, orders and
their payments' notifications) is made here, through the app's own code and the fakes,
before each child starts.

Each side runs with its own packages only, each in a venv under .local/bench built with
this interpreter on first use and rebuilt when its requirements or the Python change: the
functions in `layer-venv` (requirements.txt, what the SCF layer ships; the project's .venv
also holds the development tools and the tests' packages), the anchor in `anchor-venv`
(the versions pinned below). The anchor is FastAPI with one route (GET /health returning a
dict) wrapped in Mangum, sent an AWS API Gateway (REST, v1) proxy event.
"""

from __future__ import annotations

import argparse
import base64
import json
import marshal
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.payments.gateway import Channel

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
LOCAL = ROOT / ".local" / "bench"
SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

# ------------------------------------------------------------------------ the anchor

# Current releases as pip resolved them (fastapi, mangum and what they pull in), pinned so
# that the anchor does not move between runs; a change here recreates the venv.
ANCHOR_REQUIREMENTS = (
    "fastapi==0.165.0",
    "mangum==0.22.0",
    "starlette==1.10.0",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "anyio==4.16.0",
    "idna==3.21",
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "opentelemetry-api==1.45.3",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
)
ANCHOR_VENV = LOCAL / "anchor-venv"
LAYER_VENV = LOCAL / "layer-venv"
ANCHOR_DIR = LOCAL / "anchor-app"
ANCHOR_NAME = "FastAPI + Mangum"
ANCHOR_APP = """\
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


main_handler = Mangum(app, lifespan="off")
"""
# What a function that reads the database cannot start without, measured beside it in the
# layer's venv: the libraries this project chose for its requests (models and settings,
# SQL, the MySQL driver, Redis, tokens), imported as a database function's first call
# imports them, and a handler that does nothing.
FLOOR_DIR = LOCAL / "floor-app"
FLOOR_NAME = "library floor"
FLOOR_APP = """\
import jwt
import pydantic
import pymysql
import redis
import sqlalchemy
import sqlalchemy.dialects.mysql.pymysql


def main_handler(event, context):
    return {"statusCode": 200, "body": ""}
"""


def venv_python(venv: Path, requirements: Sequence[str]) -> Path:
    """The interpreter of a venv holding exactly `requirements`, built with this Python on
    first use and rebuilt when the requirements or the Python change."""
    python = venv / "bin" / "python"
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join([f"# {sys.version}", *requirements]) + "\n"
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"building {venv.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *requirements,
            ],
            check=True,
        )
        stamp.write_text(wanted)  # last, so an interrupted build is redone
    return python


def layer_requirements() -> list[str]:
    """requirements.txt: the runtime packages of the SCF layer, and nothing else."""
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").open())
    return [line for line in lines if line]


def app_dir(directory: Path, source: str) -> Path:
    """`directory` holding `source` as its index.py."""
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / "index.py"
    if not index.exists() or index.read_text() != source:
        index.write_text(source)
    return directory


# ------------------------------------------------------------------------ the requests

PASSWORD = "bench password 1"
ADMIN_PHONE = "+8613900000000"
PLAN_ID = "bench-month"
PLAN = {
    "name": "Bench month",
    "price_fen": 1990,
    "duration_days": 30,
    "quota": 100,
    "enabled": True,
}
PIPELINE = {
    "name": "Bench",
    "description": "Written by bench/cold_start.py",
    "cost": 1,
    "steps": [{"id": "only", "type": "sim", "duration_ms": 10}],
}


@dataclass(frozen=True)
class Probe:
    """One function's first request: what is sent, and the status it must answer."""

    method: str
    path: str
    status: int
    body: Any = None
    token: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # A body sent as it is (a provider's notification), instead of `body` as JSON.
    raw_body: bytes | None = None
    # Run in the parent just before the child: sets the state the request meets.
    before: Callable[[], object] | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _phone() -> str:
    return "+86139" + f"{secrets.randbelow(10**8):08d}"


class Seeded:
    """What the requests need, made in this process through the app's own code (imported
    inside the methods: the settings must be in the environment before app.config loads).
    `tencent` and `wechat` are the protocol fakes the children talk to."""

    def __init__(self, tencent: Any, wechat: Any, wechatpay: Any, alipay: Any) -> None:
        from app.db.transaction import transaction
        from app.identity import invites, passwords, users
        from app.payments import plans
        from app.quota import grant

        self._tencent = tencent
        self._wechat = wechat
        self._wechatpay = wechatpay
        self._alipay = alipay
        plans.save(PLAN_ID, plans.PlanFields(**PLAN), actor=None)
        invites.refill_job()  # as the timer keeps it: new users take a code from the pool
        with transaction() as conn:
            self.member = users.create(
                conn, phone=_phone(), password_hash=passwords.hash_password(PASSWORD)
            )
            self.admin = users.create(conn, phone=ADMIN_PHONE)  # admin through ADMIN_PHONES
            self.target = users.create(conn, phone=_phone())  # of the admin's changes
            self.leaver = users.create(conn, phone=_phone())  # of logout-all
            self.wechat_openid = "bench-" + secrets.token_hex(8)
            users.create(conn, openid=self.wechat_openid)  # WeChat sign-in of a known user
        assert self.admin["role"] == "admin"
        grant(self.member["id"], 1000, kind="admin", reason="bench funding")
        self.member_token = self.session(self.member).access_token
        self.admin_token = self.session(self.admin).access_token
        self.finished_task = self.new_task()
        self.settle_tasks()

    def session(self, user: dict[str, Any]) -> Any:
        """A new signed-in device of the user: its access and refresh tokens."""
        from app.identity import sessions

        return sessions.start(user["id"], role=user["role"], phone=user["phone"])

    def registration(self) -> dict[str, str]:
        """A register body whose code the app issued (through its SMS provider) just now."""
        from app.identity import sms

        phone = _phone()
        sms.send(phone, "register", _client_ip())
        (sent,) = (
            c for c in self._tencent.calls_of("SendSms") if phone in c.params["PhoneNumberSet"]
        )
        return {"phone": phone, "password": PASSWORD, "code": sent.params["TemplateParamSet"][0]}

    def wechat_login_code(self) -> str:
        """A fresh login code that WeChat maps to the known user's openid."""
        code = secrets.token_urlsafe(16)
        self._wechat.code(code, openid=self.wechat_openid)
        return code

    def new_task(self) -> str:
        from app.tasks import service

        return str(service.create(self.member["id"], "demo", {}).task["id"])

    def settle_tasks(self) -> None:
        """Cancels every queued task, so the sweeper never finds stalled ones and does the
        same (nothing) on every run."""
        from sqlalchemy import select

        from app.db.tables import tasks
        from app.db.transaction import transaction
        from app.tasks import lifecycle

        with transaction() as conn:
            active = (
                conn.execute(select(tasks.c.id).where(tasks.c.status.in_(lifecycle.ACTIVE)))
                .scalars()
                .all()
            )
        for task_id in active:
            lifecycle.cancel(task_id)

    def cache_profile(self) -> None:
        from app import profiles

        profiles.cached(self.member["id"])

    def cache_catalog(self) -> None:
        from app.pipeline import catalog

        catalog.public_list()

    def cache_plans(self) -> None:
        from app.payments import plans

        plans.public_list()

    def new_order(self, channel: Channel) -> str:
        """A pending order of the member's, its trade open at the channel's fake."""
        from app.payments import orders

        return str(orders.create(self.member["id"], PLAN_ID, channel).order["id"])

    def wechatpay_notification(self) -> Probe:
        """WeChat Pay's signed notification of a new order the member has just paid."""
        paid = self._wechatpay.pay(self.new_order("wechat"))
        return Probe(
            "POST", "/payments/wechat/notify", 200, raw_body=paid.body, headers=paid.lower_headers
        )

    def alipay_notification(self) -> Probe:
        """Alipay's, likewise (a signed form)."""
        paid = self._alipay.sim.pay(self.new_order("alipay"))
        form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return Probe("POST", "/payments/alipay/notify", 200, raw_body=paid.body, headers=form)


# Each HTTP function's first request (for a function that serves several routes, its most
# common one), made afresh for every run (fresh phones, sessions,
# codes and tasks where a request uses one up).
PROBES: dict[str, Callable[[Seeded], Probe]] = {
    "health": lambda s: Probe("GET", "/health", 200),
    "openapi": lambda s: Probe("GET", "/openapi.json", 200),
    "docs": lambda s: Probe("GET", "/docs", 200),
    "metrics": lambda s: Probe("GET", "/metrics", 200),
    "auth-sms-code": lambda s: Probe(
        "POST", "/auth/sms-code", 200, {"phone": _phone(), "purpose": "register"}
    ),
    "auth-register": lambda s: Probe("POST", "/auth/register", 201, s.registration()),
    "auth-login": lambda s: Probe(
        "POST", "/auth/login", 200, {"phone": s.member["phone"], "password": PASSWORD}
    ),
    "auth-wechat-login": lambda s: Probe(
        "POST", "/auth/wechat-login", 200, {"code": s.wechat_login_code()}
    ),
    "auth-refresh": lambda s: Probe(
        "POST", "/auth/refresh", 200, {"refresh_token": s.session(s.member).refresh_token}
    ),
    "auth-logout": lambda s: Probe(
        "POST", "/auth/logout", 204, {}, token=s.session(s.member).access_token
    ),
    "auth-logout-all": lambda s: Probe(
        "POST", "/auth/logout-all", 204, {}, token=s.session(s.leaver).access_token
    ),
    "users-me": lambda s: Probe(
        "GET", "/users/me", 200, token=s.member_token, before=s.cache_profile
    ),
    "admin-users-list": lambda s: Probe(
        "GET", "/admin/users", 200, token=s.admin_token, query={"limit": "20"}
    ),
    "admin-users-id": lambda s: Probe(
        "PATCH", f"/admin/users/{s.target['id']}", 200, {"role": "admin"}, token=s.admin_token
    ),
    "admin-pipelines-put": lambda s: Probe(
        "PUT", "/admin/pipelines/bench", 200, PIPELINE, token=s.admin_token
    ),
    "admin-jobs-run": lambda s: Probe(
        "POST", "/admin/jobs/saga-sweeper", 200, token=s.admin_token, before=s.settle_tasks
    ),
    "pipelines-list": lambda s: Probe("GET", "/pipelines", 200, before=s.cache_catalog),
    "tasks": lambda s: Probe(
        "POST", "/tasks", 201, {"pipeline_id": "demo", "input": {}}, token=s.member_token
    ),
    "tasks-id": lambda s: Probe("GET", f"/tasks/{s.finished_task}", 200, token=s.member_token),
    "uploads": lambda s: Probe(
        "POST",
        "/uploads",
        201,
        {"content_type": "image/png", "size_bytes": 300_000},
        token=s.member_token,
    ),
    "plans-list": lambda s: Probe("GET", "/plans", 200, before=s.cache_plans),
    "orders": lambda s: Probe(
        "POST", "/orders", 201, {"plan_id": PLAN_ID, "channel": "wechat"}, token=s.member_token
    ),
    "orders-id": lambda s: Probe(
        "GET", f"/orders/{s.new_order('wechat')}", 200, token=s.member_token
    ),
    "payments-wechat-notify": lambda s: s.wechatpay_notification(),
    "payments-alipay-notify": lambda s: s.alipay_notification(),
    "admin-plans-put": lambda s: Probe(
        "PUT", f"/admin/plans/{PLAN_ID}", 200, PLAN, token=s.admin_token
    ),
    "admin-secrets-name": lambda s: Probe(
        "PUT",
        "/admin/secrets/BENCH_TOKEN",
        204,
        {"value": secrets.token_urlsafe(32)},
        token=s.admin_token,
    ),
    "admin-secrets-list": lambda s: Probe("GET", "/admin/secrets", 200, token=s.admin_token),
    "fallback": lambda s: Probe("GET", "/nowhere", 404),
}


# ------------------------------------------------------------------------ the events


def _client_ip() -> str:
    # Every request from its own client, so the per-IP limits (SMS sends, phone lookups:
    # 30 an hour) never answer 429 however often the bench runs.
    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


def function_event(probe: Probe) -> dict[str, Any]:
    """The platform's event for a function: the one place that knows its shape."""
    from tests.support.function_url import event

    return event(
        probe.method,
        probe.path,
        body=probe.body,
        raw_body=probe.raw_body,
        token=probe.token,
        query=probe.query,
        headers=probe.headers,
        source_ip=_client_ip(),
    )


def anchor_event() -> dict[str, Any]:
    """An AWS API Gateway REST (v1) proxy event for GET /health, as Mangum reads it."""
    headers = {
        "Host": "abcdef1234.execute-api.ap-east-1.amazonaws.com",
        "User-Agent": "bench",
        "X-Forwarded-For": _client_ip(),
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": "/health",
        "path": "/health",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/health",
            "httpMethod": "GET",
            "path": "/release/health",
            "stage": "release",
            "requestId": secrets.token_hex(16),
            "identity": {"sourceIp": headers["X-Forwarded-For"], "userAgent": "bench"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


# ------------------------------------------------------------------------ the children

# Only built-in modules before the clock starts (marshal, not json: nothing the app would
# import is imported early). The peak RSS is the kernel's high-water mark of this process's
# memory (VmHWM), not getrusage's ru_maxrss: Linux carries ru_maxrss over from before the
# exec, so a child would report the bench's own (larger) footprint.
CHILD = """\
import marshal, sys, time
event, context = marshal.loads(sys.stdin.buffer.read())
started = time.perf_counter()
import index
imported = time.perf_counter()
answer = index.main_handler(event, context)
answered = time.perf_counter()
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
with open(sys.argv[1], "wb") as out:
    marshal.dump({
        "import_ms": (imported - started) * 1000,
        "first_call_ms": (answered - started) * 1000,
        "peak_rss_mb": peak_kb / 1024,
        "status": answer["statusCode"],
        "body": answer.get("body"),
    }, out)
"""

# Nothing else from the caller's environment (no PYTHON* variables, no test settings).
_KEEP = ("PATH", "HOME", "LANG", "TMPDIR")


@dataclass
class Target:
    name: str
    python: Path
    directory: Path
    pythonpath: str
    samples: list[dict[str, float]] = field(default_factory=list)

    def median(self, measure: str) -> float:
        return statistics.median(s[measure] for s in self.samples)


def run_child(
    target: Target, event: dict[str, Any], settings: dict[str, str], out: Path
) -> dict[str, Any]:
    from tests.support.function_url import context

    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env.update(settings, PYTHONPATH=target.pythonpath)
    child = subprocess.run(
        [str(target.python), "-c", CHILD, str(out)],
        input=marshal.dumps((event, context(target.name))),
        cwd=target.directory,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"{target.name}: the child failed\n{child.stderr.decode()}")
    result: dict[str, Any] = marshal.loads(out.read_bytes())
    return result


def measure(
    targets: list[Target], seeded: Seeded, settings: dict[str, str], runs: int, tmp: Path
) -> None:
    """Runs 0 (untimed: fills the .pyc caches) to `runs`, each target once per run."""
    for run in range(runs + 1):
        print(f"run {run}/{runs}{' (warm-up)' if run == 0 else ''}", file=sys.stderr, flush=True)
        for target in targets:
            if target.name in (ANCHOR_NAME, FLOOR_NAME):
                event, status, label = anchor_event(), 200, "GET /health"
            else:
                probe = PROBES[target.name](seeded)
                if probe.before is not None:
                    probe.before()
                event, status, label = function_event(probe), probe.status, probe.label
            result = run_child(target, event, settings, tmp / "result")
            if result["status"] != status:
                raise SystemExit(
                    f"{target.name}: {label} answered {result['status']}, expected {status}:\n"
                    f"{result['body']}"
                )
            if run:
                target.samples.append(
                    {k: result[k] for k in ("import_ms", "first_call_ms", "peak_rss_mb")}
                )


# ------------------------------------------------------------------------ set-up and report


def http_functions() -> tuple[list[str], list[str]]:
    """(HTTP functions, the others), by whether index.py wraps `http_handler`."""
    http: list[str] = []
    other: list[str] = []
    for index in sorted(FUNCTIONS.glob("*/index.py")):
        (http if "http_handler(" in index.read_text() else other).append(index.parent.name)
    return http, other


def instance_settings(db_name: str, *fakes: dict[str, str]) -> dict[str, str]:
    """An SCF instance's environment (serverless.yml), pointed at local services and at the
    protocol fakes whose settings are `fakes` (Tencent Cloud API, COS, WeChat, WeChat Pay,
    Alipay)."""
    return {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER.rstrip('/')}/{db_name}",
        "REDIS_URL": REDIS_URL,
        "JWT_SECRET": secrets.token_urlsafe(64),
        "DB_POOL_MIN": "0",
        "DB_POOL_MAX": "2",
        "DB_POOL_ACQUIRE_TIMEOUT_S": "5",
        "LOG_LEVEL": "WARNING",
        "BCRYPT_COST": "10",
        "ADMIN_PHONES": ADMIN_PHONE,
        # The member makes two orders a run (the `orders` probe's and `orders-id`'s), past
        # the hour's 20 by the eleventh.
        "ORDERS_PER_USER_PER_HOUR": "1000",
        "QUEUE_BACKEND": "scf",
        "SCF_NAMESPACE": "bench",
        "SMS_PROVIDER": "tencent",
        "SMS_SDK_APP_ID": "1400000000",
        "SMS_SIGN_NAME": "Bench",
        "SMS_TEMPLATE_ID": "100000",
        "CRYPTO_PROVIDER": "local",
        "LOCAL_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        **{name: value for fake in fakes for name, value in fake.items()},
    }


def report(targets: list[Target], skipped: list[str], runs: int) -> dict[str, Any]:
    anchor, floor, functions = targets[0], targets[1], targets[2:]
    measures = ("import_ms", "first_call_ms", "peak_rss_mb")
    base = {m: anchor.median(m) for m in measures}
    print(f"\nPython {sys.version.split()[0]}, medians of {runs} fresh interpreters per row")
    print(
        f"anchor, {ANCHOR_NAME} (GET /health): import {base['import_ms']:.1f} ms, "
        f"first call {base['first_call_ms']:.1f} ms, peak RSS {base['peak_rss_mb']:.1f} MB"
    )
    print(f"  ({', '.join(ANCHOR_REQUIREMENTS)})\n")
    header = (
        f"{'function':<22}{'import ms':>11}{'x anchor':>10}{'first call ms':>15}{'x anchor':>10}"
        f"{'peak RSS MB':>13}{'x anchor':>10}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[str, Any] = {}
    for target in [*functions, floor, anchor]:
        row = {m: target.median(m) for m in measures}
        ratio = {m: row[m] / base[m] for m in measures}
        print(
            f"{target.name:<22}{row['import_ms']:>11.1f}{ratio['import_ms']:>10.2f}"
            f"{row['first_call_ms']:>15.1f}{ratio['first_call_ms']:>10.2f}"
            f"{row['peak_rss_mb']:>13.1f}{ratio['peak_rss_mb']:>10.2f}"
        )
        rows[target.name] = {
            **row,
            **{f"{m}_x_anchor": ratio[m] for m in measures},
            "samples": target.samples,
        }
    if skipped:
        print(f"\nnot HTTP functions, not measured: {', '.join(skipped)}")
    return {
        "python": sys.version.split()[0],
        "runs": runs,
        "anchor": {
            "name": ANCHOR_NAME,
            "requirements": list(ANCHOR_REQUIREMENTS),
            **rows.pop(anchor.name),
        },
        "floor": {"name": FLOOR_NAME, **rows.pop(floor.name)},
        "functions": rows,
        "not_measured": skipped,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("functions", nargs="*", help="HTTP function names (default: all)")
    args = parser.parse_args(argv)

    http, other = http_functions()
    unknown = sorted(set(args.functions) - set(http))
    if unknown:
        raise SystemExit(f"not HTTP functions: {', '.join(unknown)} (HTTP: {', '.join(http)})")
    missing = sorted(set(http) - set(PROBES))
    if missing:
        raise SystemExit(f"no first request in PROBES for: {', '.join(missing)}")
    names = args.functions or http

    anchor_python = venv_python(ANCHOR_VENV, ANCHOR_REQUIREMENTS)
    layer_python = venv_python(LAYER_VENV, layer_requirements())
    targets = [
        Target(ANCHOR_NAME, anchor_python, app_dir(ANCHOR_DIR, ANCHOR_APP), str(ANCHOR_DIR)),
        Target(FLOOR_NAME, layer_python, app_dir(FLOOR_DIR, FLOOR_APP), str(FLOOR_DIR)),
        *(
            Target(name, layer_python, FUNCTIONS / name, f"{FUNCTIONS / name}:{ROOT / 'shared'}")
            for name in names
        ),
    ]

    from tests.fakes.alipay import FakeAlipay
    from tests.fakes.cos import FakeCos
    from tests.fakes.tencentcloud import Call, FakeTencentCloud, sms_handler
    from tests.fakes.wechat import FakeWechat
    from tests.fakes.wechatpay import FakeWechatPay
    from tests.support.database import migrated_database

    def invoke(params: dict[str, Any], _call: Call) -> dict[str, Any]:
        return {"Result": {"FunctionRequestId": secrets.token_hex(16)}}

    db_name = f"bench_cold_start_{secrets.token_hex(4)}"
    with (
        FakeTencentCloud() as tencent,
        # One set of keys, as the run role's temporary keys sign both APIs on SCF.
        FakeCos(secret_id=tencent.secret_id, secret_key=tencent.secret_key) as cos,
        FakeWechat() as wechat,
        FakeWechatPay() as wechatpay,
        FakeAlipay() as alipay,
    ):
        tencent.on("SendSms", sms_handler())
        tencent.on("Invoke", invoke)  # the scf queue backend's publish
        settings = instance_settings(
            db_name,
            tencent.env(),
            cos.settings(),
            wechat.env(),
            wechatpay.settings(),
            alipay.settings(),
        )
        os.environ.update(settings)  # this process seeds under the same settings
        with migrated_database(SERVER, db_name), tempfile.TemporaryDirectory() as tmp:
            seeded = Seeded(tencent, wechat, wechatpay, alipay)
            measure(targets, seeded, settings, args.runs, Path(tmp))
    results = report(targets, other, args.runs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
