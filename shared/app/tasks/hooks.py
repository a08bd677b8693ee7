"""The one place a task's status change is announced.

Every transition of a task's status (queued, running, succeeded, failed, cancelled) calls
`task_updated` after its transaction committed, with the task as the API shows it. For now
it writes a log line; realtime push hooks in here.
"""

from __future__ import annotations

import logging
from typing import Any

from app.observability import logging as applog

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
