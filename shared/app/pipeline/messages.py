"""The runner's work items: one queue message per step or fork branch to run.

    {"kind": "step", "task_id", "step": position}
    {"kind": "branch", "task_id", "step": position, "branch": index, "width"?: int}

Task creation sends the first one; the runner sends the rest and reads them back with
`parse`. `width`, the fork's window width when the sender knows it, saves the receiver a
read. Messages go to PIPELINE_QUEUE and are delivered at least once, possibly late, possibly
twice: whoever handles one must be idempotent. Publish after the commit that makes a
message valid (`tx.after_commit(...)`); one lost in between leaves work with no progress,
which the sweeper publishes again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app import queue
from app.config import get_settings
from app.observability import logging as applog

log = applog.get_logger("app.pipeline.messages")


@dataclass(frozen=True)
class Work:
    """What one message asks for: a plain step (`branch` -1) or one branch of a fork."""

    task_id: str
    position: int
    branch: int = -1
    width: int | None = None  # the fork's window width, when the sender knew it

    @property
    def is_branch(self) -> bool:
        return self.branch >= 0


def publish_step(task_id: str, position: int, delay_s: float = 0) -> None:
    message = {"kind": "step", "task_id": task_id, "step": position}
    queue.publish(get_settings().pipeline_queue, message, delay_s=delay_s)


def publish_branch(
    task_id: str, position: int, branch: int, delay_s: float = 0, width: int | None = None
) -> None:
    message: dict[str, Any] = {"kind": "branch", "task_id": task_id, "step": position}
    message["branch"] = branch
    if width is not None:
        message["width"] = width
    queue.publish(get_settings().pipeline_queue, message, delay_s=delay_s)


def publish(work: Work, delay_s: float = 0) -> None:
    if work.is_branch:
        publish_branch(work.task_id, work.position, work.branch, delay_s, work.width)
    else:
        publish_step(work.task_id, work.position, delay_s)


def parse(message: Mapping[str, Any]) -> Work | None:
    """The work a message asks for; None (logged) for one that can never be valid."""
    kind = message.get("kind")
    task_id = message.get("task_id")
    position = message.get("step")
    branch = message.get("branch", -1)
    width = message.get("width")
    valid = (
        kind in ("step", "branch")
        and isinstance(task_id, str)
        and isinstance(position, int)
        and isinstance(branch, int)
        and (branch >= 0 if kind == "branch" else branch == -1)
    )
    if not valid:
        applog.log_fields(log, logging.ERROR, "pipeline message dropped", body=dict(message))
        return None
    assert isinstance(task_id, str) and isinstance(position, int) and isinstance(branch, int)
    return Work(task_id, position, branch, width if isinstance(width, int) and width > 0 else None)
