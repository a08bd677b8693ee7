"""What follows each committed transition of a task, for realtime: from `running` on, a
`task.updated` message on its owner's stream; when it succeeds or fails, the subscription
message for a user who is away. Each part fails on its own, logged, and neither can fail
or undo the transition (it has committed; `app.tasks.hooks` calls this after the commit)."""

from __future__ import annotations

import logging
from typing import Any

from app.observability import logging as applog
from app.realtime import streams, subscription
from app.storage import outputs

log = applog.get_logger("app.realtime.announce")

# A created task is answered to its creator by POST /tasks; the stream starts at `running`.
NOT_PUSHED = frozenset({"queued"})


def task_updated(view: dict[str, Any]) -> None:
    user_id = str(view.get("user_id"))
    if view.get("status") not in NOT_PUSHED:
        try:
            streams.append(user_id, _kept_form(view))
        except Exception as exc:  # noqa: BLE001 - the push is lost; the task stands
            applog.log_fields(
                log,
                logging.WARNING,
                "task update not pushed",
                task_id=view.get("id"),
                user_id=user_id,
                status=view.get("status"),
                error=type(exc).__name__,
            )
    try:
        subscription.notify_if_away(view)
    except Exception as exc:  # noqa: BLE001 - as above: the message is lost, the task stands
        applog.log_fields(
            log,
            logging.WARNING,
            "subscription message not sent",
            task_id=view.get("id"),
            user_id=user_id,
            error=type(exc).__name__,
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
