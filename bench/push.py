"""Realtime push through the local cloud: many WebSocket connections, each receiving its
user's task updates, the latency from a transition's commit to the message's arrival
against a bare Redis `XADD` + `XREAD BLOCK` round trip.

    PYTHONPATH=shared:. .venv/bin/python bench/push.py [--connections 200] [--updates 10]
                                                       [--threads 1]

The local cloud runs as `python -m infra.local` in a child process, serving /ws with the
`ws` web function's app, on its own MariaDB database at BENCH_DATABASE_SERVER (created,
migrated and dropped) and Redis at BENCH_REDIS_URL (default redis://127.0.0.1:6379/5). This
process opens one connection per user, then moves each user's tasks itself through the
real transitions (`app.tasks.lifecycle.mark_running` and `finish`, `--threads` at once),
`--updates` / 2 tasks per user, two updates each. A transition's commit time is when its
after-commit hook starts (`app.tasks.hooks.task_updated`, timed by a wrapper that then
calls it); the message's arrival is when the client has read it. Every connection must
receive exactly its own updates, in order.

Printed: p50 and p99 of commit-to-arrival, of the bare round trip (a client blocked in
`XREAD BLOCK` on one stream, another `XADD`ing to it, the time from before the add to the
read's return, one at a time), and ours / bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"bench_push_{secrets.token_hex(4)}"
os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER.rstrip('/')}/{DB_NAME}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
        "LOG_LEVEL": "WARNING",
        "JWT_SECRET": secrets.token_urlsafe(64),
        "QUEUE_BACKEND": "local",  # the start messages of the tasks made here go nowhere
    }
)

from websockets.asyncio.client import connect  # noqa: E402

from app.tasks import hooks, lifecycle, service  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.local_cloud import local_cloud_process  # noqa: E402
from tests.support.pipelines import new_pipeline, token_for  # noqa: E402
from tests.support.quota import new_user  # noqa: E402

committed: dict[tuple[str, str], float] = {}
_announce = hooks.task_updated


def _timed_hook(view: dict[str, Any]) -> None:
    committed[(view["id"], view["status"])] = time.perf_counter()
    _announce(view)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _receive(url: str, expected: int, arrivals: list[tuple[str, str, str, float]]) -> None:
    async with connect(url, open_timeout=30, max_queue=None) as socket:
        arrivals.append(("", "", "open", time.perf_counter()))
        for _ in range(expected):
            message = json.loads(await asyncio.wait_for(socket.recv(), 60))
            data = message["data"]
            arrivals.append((message["id"], data["id"], data["status"], time.perf_counter()))
            await socket.send(json.dumps({"type": "ack", "id": message["id"]}))


def _clients(urls: list[str], expected: int, ready: Any, out: Any) -> None:
    """The connections, in a process of their own: the threads moving tasks here would
    otherwise hold the GIL while a message waits to be read. perf_counter is the system's
    monotonic clock, the same in both processes."""

    async def run() -> None:
        per_user: list[list[tuple[str, str, str, float]]] = [[] for _ in urls]
        jobs = [
            asyncio.ensure_future(_receive(url, expected, found))
            for url, found in zip(urls, per_user, strict=True)
        ]
        while not all(found for found in per_user):
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*jobs)
        out.put(per_user)

    asyncio.run(run())


def bare_round_trips(samples: int) -> list[float]:
    from app.redis_client import build_async_redis, get_redis

    url = os.environ["REDIS_URL"]
    key = f"bench:bare:{secrets.token_hex(4)}"
    writer = get_redis()
    times: list[float] = []

    async def run() -> None:
        reader = build_async_redis(url, socket_timeout=15)
        cursor = writer.xadd(key, {"data": "{}"})
        loop = asyncio.get_running_loop()
        for _ in range(samples):
            read = asyncio.ensure_future(reader.xread({key: cursor}, block=10_000))
            await asyncio.sleep(0.002)  # the read is blocked before the add
            started = time.perf_counter()
            await loop.run_in_executor(None, writer.xadd, key, {"data": '{"status":"x"}'})
            reply = await read
            times.append(time.perf_counter() - started)
            cursor = reply[0][1][-1][0]
        await reader.aclose()

    asyncio.run(run())
    writer.delete(key)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--updates", type=int, default=10, help="per connection (even)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tasks_per_user = args.updates // 2

    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "APP_ENV", "DATABASE_URL", "REDIS_URL", "JWT_SECRET")
    }
    env.update(PORT="0", LOG_LEVEL="WARNING", DB_POOL_MAX="100")
    with migrated_database(SERVER, DB_NAME), local_cloud_process(env) as cloud:
        from app.redis_client import get_redis

        get_redis().flushdb()
        hooks.task_updated = _timed_hook  # type: ignore[assignment]
        pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=0)
        users = [new_user() for _ in range(args.connections)]
        tasks = {
            user: [service.create(user, pipeline, {}).task["id"] for _ in range(tasks_per_user)]
            for user in users
        }
        ws = cloud.url.replace("http://", "ws://")
        urls = [f"{ws}/ws?token={token_for(user)}" for user in users]
        ready, results = multiprocessing.Event(), multiprocessing.Queue()
        listener = multiprocessing.Process(
            target=_clients, args=(urls, args.updates, ready, results), daemon=True
        )
        listener.start()
        if not ready.wait(120):
            raise SystemExit("the connections did not open")

        def move(user: str) -> None:
            for task_id in tasks[user]:
                lifecycle.mark_running(task_id)
                lifecycle.finish(task_id, output={"ok": True})

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(move, users))
        moved = time.perf_counter() - started
        try:
            received = results.get(timeout=120)
        except queue.Empty:
            raise SystemExit("not every update arrived within 120 s") from None
        listener.join(10)
        bare = bare_round_trips(2000)

    latencies = []
    for user, found in zip(users, received, strict=True):
        updates = [a for a in found if a[2] != "open"]
        expected = [(t, s) for t in tasks[user] for s in ("running", "succeeded")]
        assert [(task, status) for _, task, status, _ in updates] == expected, user
        ids = [tuple(map(int, message_id.split("-"))) for message_id, *_ in updates]
        assert ids == sorted(ids), user
        latencies += [at - committed[(task, status)] for _, task, status, at in updates]

    ours50, ours99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    bare50, bare99 = percentile(bare, 0.5), percentile(bare, 0.99)
    print(
        f"{args.connections} connections x {args.updates} updates "
        f"({len(latencies)} messages, every one in order), {args.threads} threads moving "
        f"tasks, Python {sys.version.split()[0]}"
    )
    print(f"transitions: {len(latencies)} in {moved:.2f} s ({len(latencies) / moved:.0f}/s)")
    print(f"commit -> received: p50 {ours50 * 1000:.2f} ms, p99 {ours99 * 1000:.2f} ms")
    print(f"bare XADD -> XREAD:  p50 {bare50 * 1000:.2f} ms, p99 {bare99 * 1000:.2f} ms")
    print(f"ours / bare: p50 {ours50 / bare50:.1f}x, p99 {ours99 / bare99:.1f}x")
    print(f"mean {statistics.mean(latencies) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
