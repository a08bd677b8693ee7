"""In-process latency of the identity handlers beside the primitives they contain.

    PYTHONPATH=shared:. .venv/bin/python bench/identity.py [--calls 300] [--login-calls 30]

Each handler is the function's own `main_handler` called with an API Gateway event, as SCF
calls it: `POST /auth/login` (password), `POST /auth/refresh` (each call presents the token
the previous one returned) and `GET /users/me` (a profile cache hit). Beside each: the
median of the primitives it cannot avoid, measured in the same run: one bcrypt check at
BCRYPT_COST, one Redis round trip (PING), one MariaDB round trip (SELECT 1 on a pooled
connection). The ratio handler / primitives shows what our own code adds.

Runs on a database of its own and BENCH_REDIS_URL (bench/environment.py).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.environment import SERVER, prepare

DB_NAME = prepare("identity", SMS_PROVIDER="console")

import bcrypt  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db.transaction import transaction  # noqa: E402
from app.identity import passwords, users  # noqa: E402
from app.redis_client import get_redis  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.function_url import context, event  # noqa: E402
from tests.support.functions import handler  # noqa: E402

PASSWORD = "bench password 1"


def paired_ms(
    fn: Callable[[], Any], primitive: Callable[[], Any], calls: int, warmup: int = 3
) -> tuple[float, float]:
    """Medians of `fn` and of `primitive`, timed alternately call by call, so that both
    meet the machine in the same state (a loopback round trip timed in a tight loop of its
    own is several times faster than one made between a handler's other work)."""
    for _ in range(warmup):
        fn()
        primitive()
    ours, floor = [], []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        between = time.perf_counter()
        primitive()
        ours.append((between - started) * 1000)
        floor.append((time.perf_counter() - between) * 1000)
    return statistics.median(ours), statistics.median(floor)


def median_ms(fn: Callable[[], Any], calls: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


_handlers: dict[str, Callable[..., Any]] = {}


def invoke(function: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    # Each function's main_handler is looked up once, as SCF holds it: finding its folder
    # is no part of an invocation.
    main_handler = _handlers.get(function) or _handlers.setdefault(function, handler(function))
    result = main_handler(event(method, path, **kwargs), context(function))
    if result["statusCode"] >= 400:
        raise RuntimeError(f"{function}: {result['statusCode']} {result['body']}")
    body: dict[str, Any] = json.loads(result["body"]) if result["body"] else {}
    return body


def run(calls: int, login_calls: int) -> None:
    phone = "+86139" + f"{secrets.randbelow(10**8):08d}"
    with transaction() as conn:
        user = users.create(conn, phone=phone, password_hash=passwords.hash_password(PASSWORD))
    login_body = {"phone": phone, "password": PASSWORD}
    pair = invoke("auth-login", "POST", "/auth/login", body=login_body)
    state = {"refresh": pair["refresh_token"]}
    access = pair["access_token"]

    def refresh() -> None:
        body = {"refresh_token": state["refresh"]}
        state["refresh"] = invoke("auth-refresh", "POST", "/auth/refresh", body=body)[
            "refresh_token"
        ]

    settings = get_settings()
    stored = passwords.hash_password(PASSWORD).encode()
    redis = get_redis()
    from app.db.engine import get_engine

    engine = get_engine()

    def db_round_trip() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    primitives = {
        "bcrypt check": median_ms(lambda: bcrypt.checkpw(PASSWORD.encode(), stored), login_calls),
        "Redis round trip": median_ms(redis.ping, calls),
        "MariaDB round trip": median_ms(db_round_trip, calls),
    }
    login = median_ms(
        lambda: invoke("auth-login", "POST", "/auth/login", body=login_body), login_calls
    )
    # The Redis-bound handlers are timed alternately with a PING each (`paired_ms`).
    refresh_ms, refresh_floor = paired_ms(refresh, redis.ping, calls)
    me_ms, me_floor = paired_ms(
        lambda: invoke("users-me", "GET", "/users/me", token=access), redis.ping, calls
    )
    handlers = {
        "POST /auth/login (password)": (login, "bcrypt check", primitives["bcrypt check"]),
        "POST /auth/refresh": (refresh_ms, "Redis round trip", refresh_floor),
        "GET /users/me (cache hit)": (me_ms, "Redis round trip", me_floor),
    }
    redis.delete(f"login:failures:phone:{phone}")
    print(
        f"BCRYPT_COST={settings.bcrypt_cost}, medians over {calls} calls "
        f"({login_calls} for bcrypt and login)\n"
    )
    print(f"{'primitive, alone':32} {'median ms':>10}")
    for name, value in primitives.items():
        print(f"{name:32} {value:10.3f}")
    print()
    print(
        f"{'handler':32} {'median ms':>10} {'contains':>18} {'its ms':>8} {'ratio':>7} "
        f"{'ours ms':>8}"
    )
    for name, (value, contained, base) in handlers.items():
        print(
            f"{name:32} {value:10.3f} {contained:>18} {base:8.3f} {value / base:7.2f} "
            f"{value - base:8.3f}"
        )
    print(
        "\nratio = handler median / the primitive it contains, timed alternately with it call "
        "by call (login: bcrypt alone); 'ours ms' = the difference: JWT work, pydantic, DB "
        "reads and the other Redis calls of the handler."
    )
    print(
        f"(user {user['id']}; refresh and login also read the user row: "
        f"{primitives['MariaDB round trip']:.3f} ms per round trip)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--login-calls", type=int, default=30)
    args = parser.parse_args()
    with migrated_database(SERVER, DB_NAME):
        run(args.calls, args.login_calls)


if __name__ == "__main__":
    main()
