"""What follows each committed transition of a task, for realtime: from `running` on, a
`task.updated` message on its owner's stream, unless one about a later state of the task
is there already (its transition committed later, its effect ran sooner: this message
would show the client a state the task has left); when it succeeds or fails, the subscription
message for a user who is away. Each part fails on its own, logged, and neither can fail
or undo the transition (it has committed; `app.tasks.hooks` calls this after the commit)."""

from __future__ import annotations

import logging
from typing import Any

from app.observability import logging as applog
from app.realtime import streams, subscription
from app.storage import outputs

log = applog.get_logger("app.realtime.announce")

# Where each pushed status stands in a task's life, which only goes forward: queued ->
# running -> one ending, or queued -> cancelled. A message is never sent after one of a
# later stage of its task (`streams.append`). A created task is answered to its creator by
# POST /tasks: `queued` is not pushed, the stream starts at `running`.
STAGE = {"running": 1, "succeeded": 2, "failed": 2, "cancelled": 2}


def task_updated(view: dict[str, Any]) -> None:
    stage = STAGE.get(str(view.get("status")))
    if stage is not None:
        try:
            if streams.append(str(view.get("user_id")), _kept_form(view), stage) is None:
                _unsent(logging.INFO, "task update not pushed: a later one was", view)
        except Exception as exc:  # noqa: BLE001 - the push is lost; the task stands
            _unsent(logging.WARNING, "task update not pushed", view, error=type(exc).__name__)
    try:
        subscription.notify_if_away(view)
    except Exception as exc:  # noqa: BLE001 - as above: the message is lost, the task stands
        _unsent(logging.WARNING, "subscription message not sent", view, error=type(exc).__name__)


def _unsent(level: int, message: str, view: dict[str, Any], **fields: Any) -> None:
    applog.log_fields(
        log,
        level,
        message,
        task_id=view.get("id"),
        user_id=str(view.get("user_id")),
        status=view.get("status"),
        **fields,
    )


def _kept_form(view: dict[str, Any]) -> dict[str, Any]:
    """The view with its output as the task row keeps it: a StoredOutput's URL is valid an
    hour, the stream keeps a message a day, so the connection that sends the message
    presigns it then (`app.events.websocket`). Read only when the view shows one."""
    if not outputs.shows_stored(view.get("output")):
        return view
    from sqlalchemy import select  # cold start: only for an output kept in COS

    from app.db.tables import tasks  # cold start: as above
    from app.db.transaction import transaction  # cold start: as above

    with transaction() as tx:
        raw = tx.execute(select(tasks.c.output).where(tasks.c.id == view["id"])).scalar()
    return {**view, "output": raw}
