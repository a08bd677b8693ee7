"""A burst of tasks through the local cloud: N tasks of a one-step 50 ms pipeline, created at
once over HTTP by many clients, against the ideal the local cloud's asynchronous concurrency
allows.

    PYTHONPATH=shared:. .venv/bin/python bench/burst.py [--tasks 200] [--clients 50]
                                                        [--concurrency 32]

The local cloud runs as `python -m infra.local` in a child process (LOCAL_ASYNC_CONCURRENCY
is --concurrency) on its own MariaDB database at BENCH_DATABASE_SERVER (created, migrated and
dropped) and Redis at BENCH_REDIS_URL (default redis://127.0.0.1:6379/5); the 50 ms step is
an `http` call to the tests' fake upstream, itself in a child process. This process only
creates the tasks and watches them end.

Printed: how fast tasks were created and finished, the mean time from a task's creation to
its end (the ideal is the step's 50 ms), and the makespan (first POST to last end) against
two ideals: `ceil(N / concurrency) x 50 ms` (as if every task existed at once) and the
creation time plus one step (as if each task ran the moment it was created).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"bench_burst_{secrets.token_hex(4)}"
STEP_S = 0.05
os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER.rstrip('/')}/{DB_NAME}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
        "LOG_LEVEL": "WARNING",
        "JWT_SECRET": secrets.token_urlsafe(64),
    }
)

import requests  # noqa: E402

from tests.fakes.upstream import Answer, FakeUpstream  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.local_cloud import local_cloud_process  # noqa: E402
from tests.support.pipelines import new_pipeline, token_for  # noqa: E402
from tests.support.quota import new_user  # noqa: E402


def _serve_upstream(port_out: Any, stop: Any) -> None:
    with FakeUpstream() as upstream:
        upstream.script("/step", lambda _c: Answer(200, {"ok": True}, delay_s=STEP_S))
        port_out.put(upstream.port)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    ports: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    upstream = multiprocessing.Process(target=_serve_upstream, args=(ports, stop), daemon=True)
    upstream.start()
    port = ports.get(timeout=10)
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "APP_ENV", "DATABASE_URL", "REDIS_URL", "JWT_SECRET")
    }
    env.update(
        PORT="0",
        LOG_LEVEL="WARNING",
        LOCAL_ASYNC_CONCURRENCY=str(args.concurrency),
        DB_POOL_MAX="100",
        # One user makes every task: --tasks may be past TASKS_PER_USER_PER_HOUR's default.
        TASKS_PER_USER_PER_HOUR=str(args.tasks),
    )
    try:
        with migrated_database(SERVER, DB_NAME), local_cloud_process(env) as cloud:
            pipeline = new_pipeline(
                [{"id": "step", "type": "http", "url": f"http://127.0.0.1:{port}/step"}]
            )
            token = token_for(new_user(quota=args.tasks))
            headers = {"Authorization": f"Bearer {token}"}
            session = requests.Session()

            def create(_i: int) -> tuple[str, float]:
                reply = session.post(
                    f"{cloud.url}/tasks",
                    json={"pipeline_id": pipeline, "input": {}},
                    headers=headers,
                    timeout=60,
                )
                assert reply.status_code == 201, reply.text
                return reply.json()["id"], time.monotonic()

            started = time.monotonic()
            with ThreadPoolExecutor(args.clients) as pool:
                created = dict(pool.map(create, range(args.tasks)))
            all_created = time.monotonic()
            ended: dict[str, float] = {}
            while len(ended) < len(created):
                page = session.get(
                    f"{cloud.url}/tasks",
                    params={"status": "succeeded", "limit": 100},
                    headers=headers,
                    timeout=30,
                ).json()
                now = time.monotonic()
                cursor = page["next_cursor"]
                items = page["items"]
                while cursor:
                    page = session.get(
                        f"{cloud.url}/tasks",
                        params={"status": "succeeded", "limit": 100, "cursor": cursor},
                        headers=headers,
                        timeout=30,
                    ).json()
                    items += page["items"]
                    cursor = page["next_cursor"]
                for task in items:
                    ended.setdefault(task["id"], now)
                if time.monotonic() - started > 300:
                    raise SystemExit(f"only {len(ended)} of {len(created)} tasks ended in 300 s")
                time.sleep(0.02)
            finished = max(ended.values())
    finally:
        stop.set()
        upstream.join(5)

    makespan = finished - started
    creating = all_created - started
    floor = math.ceil(args.tasks / args.concurrency) * STEP_S
    latency = statistics.mean(ended[t] - created[t] for t in created)
    print(
        f"{args.tasks} tasks of one {STEP_S * 1000:.0f} ms step, {args.clients} clients, "
        f"{args.concurrency} asynchronous invocations at once, Python {sys.version.split()[0]}"
    )
    print(f"created in {creating:.2f} s ({args.tasks / creating:.0f}/s)")
    print(f"mean creation to end: {latency * 1000:.0f} ms (one step: {STEP_S * 1000:.0f} ms)")
    print(
        f"makespan {makespan:.2f} s: {makespan / floor:.1f}x ceil(N/concurrency) x step "
        f"({floor:.2f} s), {makespan / (creating + STEP_S):.2f}x creation + one step"
    )


if __name__ == "__main__":
    main()
