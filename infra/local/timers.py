"""Timer triggers: each timer function fires on its 7-field cron, and on demand.

SCF cron has 7 fields: second, minute, hour, day of month, month, day of week, year
(`0 0 3 * * * *` is 03:00 every day). croniter reads exactly that layout with
`second_at_beginning=True`. Times are UTC unless `TZ` is set, as on SCF.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from croniter import croniter

from infra.manifest import TimerSpec

log = logging.getLogger("infra.local.timers")


def now() -> datetime:
    if os.environ.get("TZ"):
        return datetime.now().astimezone()
    return datetime.now(timezone.utc)


def next_times(expression: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` fire times of a 7-field cron expression strictly after `after`."""
    if len(expression.split()) != 7:
        raise ValueError(f"timer cron needs 7 fields, got {expression!r}")
    it = croniter(expression, after, second_at_beginning=True)
    return [it.get_next(datetime) for _ in range(count)]


def timer_event(timer: TimerSpec, fired: datetime) -> dict[str, Any]:
    stamp = fired.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Type": "Timer", "TriggerName": timer.name, "Time": stamp, "Message": timer.argument}


class TimerScheduler(threading.Thread):
    """One thread for all timers: sleeps until the earliest due time, then hands each due
    timer to `submit` (a thread pool), so a slow job never delays the others."""

    def __init__(
        self,
        timers: list[TimerSpec],
        fire: Callable[[TimerSpec, datetime], Any],
        submit: Callable[..., Any],
    ) -> None:
        super().__init__(name="local-timers", daemon=True)
        self.timers = timers
        self.fire = fire
        self.submit = submit
        self._stop_event = threading.Event()

    def run(self) -> None:
        upcoming = {t.name: next_times(t.cron, now())[0] for t in self.timers}
        by_name = {t.name: t for t in self.timers}
        while upcoming:
            due_at = min(upcoming.values())
            wait_s = (due_at - now()).total_seconds()
            if wait_s > 0 and self._stop_event.wait(wait_s):
                return
            if self._stop_event.is_set():
                return
            current = now()
            for name, at in list(upcoming.items()):
                if at <= current:
                    self.submit(self.fire, by_name[name], at)
                    upcoming[name] = next_times(by_name[name].cron, current)[0]

    def stop(self) -> None:
        self._stop_event.set()
