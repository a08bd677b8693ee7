"""Fan-out makespan: a 100-branch fork at PIPELINE_MAX_CONCURRENCY=5 against an upstream
that answers in 50 ms, against the ideal ceil(100/5) x 50 ms = 1.0 s.

    PYTHONPATH=shared:. .venv/bin/python bench/fanout.py [--branches 100] [--rounds 3] [--cap 5]

Runs in-process through the local queue broker (app.queue.local) with the pipeline-worker
function subscribed as the local cloud does it, on its own MariaDB database at
BENCH_DATABASE_SERVER (default mysql+pymysql://root@127.0.0.1:3306, created, migrated and
dropped) and Redis at BENCH_REDIS_URL (default redis://127.0.0.1:6379/5, the deployed
kind; `memory://` measures with fakeredis, whose Lua then runs in this process). The
upstream is the tests' fake (a threaded HTTP server on 127.0.0.1 that records how many
calls were in flight), run in a child process as an outside host would be, so it does not
share this process's GIL with the workers. The workers do share one GIL, unlike SCF
instances: the five branches of a window finish together and queue for it, so this
in-process figure is an upper bound of the deployed overhead. `--cap 1` shows the
per-branch overhead with no such queueing.

Two spans per round: the fork's own (its row's started_at to finished_at, i.e. first
dispatch to JOIN) and the whole task (POST /tasks handler call to the queue going idle).
The ratio to the ideal is printed for each (goal: fork at most 1.15x).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import statistics
import sys
import time

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"bench_fanout_{secrets.token_hex(4)}"
UPSTREAM_S = 0.05
os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER.rstrip('/')}/{DB_NAME}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
        "DB_POOL_MIN": "0",
        "DB_POOL_MAX": "24",
        "LOG_LEVEL": "WARNING",
        "JWT_SECRET": secrets.token_urlsafe(64),
    }
)

import multiprocessing  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import select  # noqa: E402

from tests.fakes.upstream import Answer, FakeUpstream  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.function_url import call  # noqa: E402
from tests.support.functions import handler  # noqa: E402
from tests.support.pipelines import Worker, new_pipeline, token_for  # noqa: E402
from tests.support.quota import new_user  # noqa: E402


def serve_upstream(conn: Any) -> None:
    """Child process: the fake upstream, answering /render in 50 ms. Commands on `conn`:
    "reset" (clears the counts), "peak" (sends the most calls seen in flight), "stop"."""
    with FakeUpstream() as upstream:
        upstream.script(
            "/render", lambda c: Answer(200, {"r": c.body["input"]}, delay_s=UPSTREAM_S)
        )
        conn.send(upstream.url("/render"))
        while True:
            command = conn.recv()
            if command == "reset":
                upstream.reset_counts()
                conn.send(True)
            elif command == "peak":
                conn.send(upstream.max_in_flight)
            else:
                return


class Upstream:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve_upstream, args=(child,), daemon=True)
        self.process.start()
        self.url = str(self.conn.recv())

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


def one_round(
    worker: Worker, upstream: Upstream, pipeline: str, token: str, n: int
) -> tuple[float, float, int]:
    from app.db.tables import task_steps
    from app.db.transaction import transaction

    upstream.ask("reset")
    body = {"pipeline_id": pipeline, "input": {"prompts": [f"p{i}" for i in range(n)]}}
    started = time.perf_counter()
    reply = call(handler("tasks"), "POST", "/tasks", body=body, token=token)
    assert reply.status == 201, reply.body
    worker.wait_idle(120)
    total = time.perf_counter() - started
    task_id = reply.json()["id"]
    with transaction() as conn:
        fork = conn.execute(
            select(task_steps.c.started_at, task_steps.c.finished_at, task_steps.c.status).where(
                task_steps.c.task_id == task_id, task_steps.c.branch == -1
            )
        ).one()
    assert fork.status == "succeeded", fork
    return (fork.finished_at - fork.started_at).total_seconds(), total, upstream.ask("peak")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=int, default=5)
    args = parser.parse_args()
    os.environ["PIPELINE_MAX_CONCURRENCY"] = str(args.cap)

    with migrated_database(SERVER, DB_NAME):
        upstream = Upstream()
        try:
            pipeline = new_pipeline(
                [
                    {
                        "id": "render",
                        "type": "fork",
                        "for_each": "input.prompts",
                        "step": {"type": "http", "url": upstream.url},
                    }
                ],
                cost=1,
            )
            token = token_for(new_user(quota=args.rounds + 1))
            worker = Worker().start()
            try:
                one_round(worker, upstream, pipeline, token, 10)  # warm pools and imports
                rounds = [
                    one_round(worker, upstream, pipeline, token, args.branches)
                    for _ in range(args.rounds)
                ]
            finally:
                worker.stop()
        finally:
            upstream.stop()

    ideal = math.ceil(args.branches / args.cap) * UPSTREAM_S
    fork_span = statistics.median(r[0] for r in rounds)
    task_span = statistics.median(r[1] for r in rounds)
    peak = max(r[2] for r in rounds)
    print(
        f"{args.branches} branches, cap {args.cap}, upstream {UPSTREAM_S * 1000:.0f} ms, "
        f"median of {len(rounds)} rounds; peak in flight {peak}"
    )
    print(f"{'span':<28}{'seconds':>10}{'ideal':>10}{'ratio':>10}")
    for label, span in (("fork (dispatch to JOIN)", fork_span), ("task (POST to idle)", task_span)):
        print(f"{label:<28}{span:>10.3f}{ideal:>10.3f}{span / ideal:>9.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
