"""Timer functions: fired on demand through the dev endpoint, on their 7-field cron, and the
cron reading itself."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from infra.local.timers import next_times
from tests.support.local_cloud import wait_for

T0 = datetime(2026, 11, 29, 12, 34, 56, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 3 * * * *", ["2026-11-30T03:00:00", "2026-12-01T03:00:00", "2026-12-02T03:00:00"]),
        ("*/5 * * * * * *", ["2026-11-29T12:35:00", "2026-11-29T12:35:05", "2026-11-29T12:35:10"]),
        ("0 */1 * * * * *", ["2026-11-29T12:35:00", "2026-11-29T12:36:00", "2026-11-29T12:37:00"]),
        ("0 0 3 1 1 * 2028", ["2028-01-01T03:00:00"]),
    ],
)
def test_seven_field_cron_next_times(expression: str, expected: list[str]) -> None:
    times = next_times(expression, T0, len(expected))
    assert [t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") for t in times] == expected


def test_a_cron_without_seven_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="7 fields"):
        next_times("0 3 * * *", T0)


def test_a_timer_fires_on_demand_and_returns_the_report(cloud: Any, redis_db: Any) -> None:
    before = int(redis_db.get("local-test:timer:probe-daily") or 0)
    reply = requests.post(
        cloud.url + "/_local/timers/timer-probe", params={"trigger": "probe-daily"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["trigger"] == "probe-daily"
    assert report["message"] == "daily"
    assert report["count"] == before + 1
    assert report["time"].endswith("+00:00")
    # The function's own timeout, as SCF gives it (time_limit_in_ms): a job sizes its run by it.
    assert 19 < report["seconds_left"] <= 20


def test_a_disabled_timer_still_fires_on_demand(cloud: Any) -> None:
    reply = requests.post(
        cloud.url + "/_local/timers/timer-probe", params={"trigger": "probe-disabled"}, timeout=10
    )
    assert reply.status_code == 200
    assert reply.json()["message"] == "never-scheduled"


def test_an_unknown_timer_is_404(cloud: Any) -> None:
    reply = requests.post(cloud.url + "/_local/timers/health", timeout=10)
    assert reply.status_code == 404
    assert reply.json()["code"] == "NOT_FOUND"


def test_timers_fire_on_their_cron(cloud: Any, redis_db: Any) -> None:
    start = int(redis_db.get("local-test:timer:probe-every-second") or 0)
    disabled = redis_db.get("local-test:timer:probe-disabled")
    fired = wait_for(
        lambda: int(redis_db.get("local-test:timer:probe-every-second") or 0) >= start + 2, 10
    )
    assert fired
    # A disabled timer is never scheduled, though every-second would have fired it twice.
    assert redis_db.get("local-test:timer:probe-disabled") == disabled
