"""cos-cleanup's throughput and request count against the ideal, in one run.

    PYTHONPATH=shared:. .venv/bin/python bench/cos_cleanup.py [--orphans 10000] [--runs 3]

Each run plants `--orphans` objects past the grace in FakeCos (the signature-checking COS
fake in front of moto's S3 app, in this process) and runs `app.storage.cleanup.run()`
against it through the COS SDK, twice per run: once with every orphan under `tasks/` (tasks
that do not exist), once half under `tasks/` and half under `uploads/` (uploads no task
names). The requests are counted at the fake, every operation included (the lifecycle and
bucket policy reads, each listing page, each DeleteObjects), against the ideal of one
read of each thing the job keeps (the lifecycle and the bucket policy: it cannot know they
are ours without reading them) and one listing page and one DeleteObjects per 1000 keys;
the goal is at most 1.1x. The bucket's
lifecycle and policy are ours before the runs start, as they are on every run after the
first, so no PUT is counted.
Objects deleted per second is orphans / the job's wall time (the SQL decisions, listing,
deleting and the maintenance_runs updates included; the fake and moto share the process).

Runs on a database of its own and BENCH_REDIS_URL (bench/environment.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from datetime import timedelta

from bench.environment import SERVER, prepare

DB_NAME = prepare("cos_cleanup")
# What the job keeps on the bucket, each read once a run.
KEPT_READS = ("lifecycle", "bucket policy")

from app.clock import utcnow  # noqa: E402
from app.ids import new_id  # noqa: E402
from app.storage import cleanup  # noqa: E402
from app.storage.objects import task_prefix, upload_key  # noqa: E402
from tests.fakes.cos import FakeCos  # noqa: E402
from tests.support.database import migrated_database  # noqa: E402
from tests.support.settings import settings_env  # noqa: E402

LAYOUTS = {"tasks only": 1.0, "tasks and uploads": 0.5}


def plant(fake: FakeCos, orphans: int, tasks_share: float) -> None:
    old = utcnow() - timedelta(days=2)
    in_tasks = round(orphans * tasks_share)
    task_ids = [new_id() for _ in range(max(1, in_tasks // 4))]
    for i in range(in_tasks):
        fake.plant(f"{task_prefix(task_ids[i % len(task_ids)])}{i:06d}.json", b"o" * 64, old)
    for i in range(orphans - in_tasks):
        fake.plant(upload_key(f"u{i % 97}", f"{i:06d}"), b"u" * 64, old)


def one_run(fake: FakeCos, orphans: int, tasks_share: float) -> tuple[float, dict[str, int]]:
    plant(fake, orphans, tasks_share)
    before = fake.counts()
    started = time.perf_counter()
    report = cleanup.run()
    elapsed = time.perf_counter() - started
    assert report["deleted"] == orphans and not fake.keys(), report
    after = fake.counts()
    return elapsed, {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orphans", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ideal = len(KEPT_READS) + 2 * math.ceil(args.orphans / 1000)
    with migrated_database(SERVER, DB_NAME), FakeCos() as fake, settings_env(**fake.settings()):
        cleanup.run()  # lifecycle and policy become ours, as on every run after the first
        print(f"{args.orphans} orphans, {args.runs} runs per layout; ideal {ideal} requests")
        print(f"{'layout':20} {'deleted/s':>10} {'requests':>9} {'x ideal':>8}  by operation")
        for name, share in LAYOUTS.items():
            rates, totals, last = [], [], {}
            for _ in range(args.runs):
                elapsed, requests = one_run(fake, args.orphans, share)
                rates.append(args.orphans / elapsed)
                totals.append(sum(requests.values()))
                last = requests
            total = max(totals)
            ops = ", ".join(f"{op} {n}" for op, n in sorted(last.items()))
            print(
                f"{name:20} {statistics.median(rates):10.0f} {total:9d} "
                f"{total / ideal:7.2f}x  {ops}"
            )


if __name__ == "__main__":
    main()
