"""The one place a task's status change is announced.

Every transition of a task's status (queued, running, succeeded, failed, cancelled) calls
`task_updated` after its transaction committed, with the task as the API shows it: a log
line, then realtime (`app.realtime.announce`: the message on the owner's stream, the
subscription message for a user who is away), which never raises.
"""

from __future__ import annotations

import logging
from typing import Any

from app.observability import logging as applog
from app.realtime import announce

log = applog.get_logger("app.tasks.hooks")


def task_updated(task: dict[str, Any]) -> None:
    applog.log_fields(
        log,
        logging.INFO,
        "task updated",
        task_id=task.get("id"),
        user_id=task.get("user_id"),
        status=task.get("status"),
    )
    announce.task_updated(task)
