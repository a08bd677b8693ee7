"""The WeChat subscription message (`subscribeMessage.send`) that tells a user who is not
connected that a task ended: sent when a task succeeds or fails, WECHAT_SUBSCRIBE_TEMPLATE_ID
is set, the user holds no connection (`presence`) and has a WeChat openid.

WeChat's access token comes from `GET /cgi-bin/token` (client_credential) and is kept in
Redis (`wechat:access-token`, one for the app) until `expires_in` less `TOKEN_MARGIN_S`
(one Redis fails to keep is still used by the send that fetched it); a send answered
40001, 40014 or 42001 (the token invalid or expired, e.g. another instance fetched a new
one) fetches a new token once and sends again. 43101 means the user has not accepted (or
has used up) a subscription to the template: nothing to deliver, not an error. Anything
else is logged with WeChat's errcode and dropped: the task and its stream message stand,
and the client sees the task at its next `GET /tasks/{id}`. An answer longer than
REPLY_MAX_BYTES is read no further and is a failure, as one that cannot be read is: no
token is kept from it, and a send so answered is not made again.

The template's keywords are this module's: `character_string1` the task id, `phrase2`
the outcome (成功 / 失败), `time3` when it ended (Beijing time); the message opens
`pages/tasks/detail?id=<task id>` of the mini-program. Neither token nor secret is ever
logged: the outbound client's failures name no URL parameter.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from app.config import get_settings
from app.db.tables import users
from app.db.transaction import transaction
from app.identity.wechat import REPLY_MAX_BYTES  # one bound for every answer of WeChat's API
from app.observability import logging as applog
from app.realtime import presence
from app.redis_client import get_redis, is_redis_error

log = applog.get_logger("app.realtime.subscription")

TOKEN_KEY = "wechat:access-token"  # noqa: S105 - a key name, not a token
TOKEN_MARGIN_S = 300
TIMEOUT_S = 5
REFUSED_BY_USER = 43101
TOKEN_REJECTED = frozenset({40001, 40014, 42001})
PAGE = "pages/tasks/detail?id={task_id}"
OUTCOME_WORDS = {"succeeded": "成功", "failed": "失败"}
BEIJING = timezone(timedelta(hours=8))


class Outcome(enum.Enum):
    SENT = "sent"
    REFUSED = "refused"  # 43101: the user holds no subscription to the template
    FAILED = "failed"
    SKIPPED = "skipped"  # not configured, connected, no openid, or not an ending


class _TokenUnavailable(Exception):
    pass


def notify_if_away(view: dict[str, Any]) -> Outcome:
    """Send the subscription message for a task that has just succeeded or failed, if its
    user is away; what came of it (logged too)."""
    settings = get_settings()
    status, user_id = view.get("status"), str(view.get("user_id"))
    if status not in OUTCOME_WORDS or not settings.wechat_subscribe_template_id:
        return Outcome.SKIPPED
    if not settings.wechat_api_base or presence.connected(user_id):
        return Outcome.SKIPPED
    openid = _openid(user_id)
    if not openid:
        return Outcome.SKIPPED
    outcome = _send(_message(view, openid, settings.wechat_subscribe_template_id))
    applog.log_fields(
        log,
        logging.INFO if outcome is not Outcome.FAILED else logging.WARNING,
        "subscription message",
        outcome=outcome.value,
        task_id=view.get("id"),
        user_id=user_id,
    )
    return outcome


def _openid(user_id: str) -> str | None:
    with transaction() as tx:
        found = tx.execute(select(users.c.wechat_openid).where(users.c.id == user_id)).first()
    return None if found is None else found[0]


def _ended_at(view: dict[str, Any]) -> str:
    raw = view.get("finished_at") or view.get("updated_at")
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        when = datetime.now(timezone.utc)
    return when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _message(view: dict[str, Any], openid: str, template_id: str) -> dict[str, Any]:
    task_id = str(view["id"])
    return {
        "touser": openid,
        "template_id": template_id,
        "page": PAGE.format(task_id=task_id),
        "data": {
            "character_string1": {"value": task_id[:32]},
            "phrase2": {"value": OUTCOME_WORDS[str(view["status"])]},
            "time3": {"value": _ended_at(view)},
        },
    }


def _errcode(reply: Any) -> int | None:
    try:
        data = reply.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    code = data.get("errcode", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _send(message: dict[str, Any]) -> Outcome:
    from app.outbound.client import CallFailed, call  # cold start: only an ending task calls out

    settings = get_settings()
    url = settings.wechat_api_base.rstrip("/") + "/cgi-bin/message/subscribe/send"
    for fresh in (False, True):
        try:
            token = _access_token(fresh=fresh)
            reply = call(
                "POST",
                url,
                params={"access_token": token},
                json_body=message,
                timeout_s=TIMEOUT_S,
                public_only=settings.is_production,
                max_bytes=REPLY_MAX_BYTES,
            )
        except (CallFailed, _TokenUnavailable) as exc:
            applog.log_fields(log, logging.WARNING, "subscribe/send failed", error=str(exc))
            return Outcome.FAILED
        if reply.cut:  # as an unreadable answer: whether it was delivered is not known
            applog.log_fields(
                log,
                logging.WARNING,
                "subscribe/send failed",
                error=f"answer over {REPLY_MAX_BYTES} bytes",
                status=reply.status,
            )
            return Outcome.FAILED
        errcode = _errcode(reply)
        if errcode == 0:
            return Outcome.SENT
        if errcode == REFUSED_BY_USER:
            return Outcome.REFUSED
        if errcode in TOKEN_REJECTED and not fresh:
            continue
        applog.log_fields(
            log, logging.WARNING, "subscribe/send refused", errcode=errcode, status=reply.status
        )
        return Outcome.FAILED
    return Outcome.FAILED  # pragma: no cover - the loop always returns


def _access_token(*, fresh: bool) -> str:
    """The cached access token, or (`fresh`, or none cached) a new one from WeChat."""
    from app.outbound.client import call  # cold start: as _send

    redis = get_redis()
    if not fresh:
        cached = redis.get(TOKEN_KEY)
        if cached:
            return str(cached)
    settings = get_settings()
    reply = call(
        "GET",
        settings.wechat_api_base.rstrip("/") + "/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": settings.wechat_appid,
            "secret": settings.wechat_secret.get_secret_value(),
        },
        timeout_s=TIMEOUT_S,
        public_only=settings.is_production,
        max_bytes=REPLY_MAX_BYTES,
    )
    if reply.cut:
        raise _TokenUnavailable(
            f"cgi-bin/token answer over {REPLY_MAX_BYTES} bytes, status {reply.status}"
        )
    try:
        data = reply.json()
    except ValueError:
        data = None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        errcode = data.get("errcode") if isinstance(data, dict) else None
        raise _TokenUnavailable(f"cgi-bin/token refused: errcode {errcode}, status {reply.status}")
    expires_in = data.get("expires_in")
    life_s = int(expires_in) if isinstance(expires_in, int) else 7200
    try:
        redis.set(TOKEN_KEY, token, ex=max(life_s - TOKEN_MARGIN_S, 60))
    except Exception as exc:
        if not is_redis_error(exc):
            raise
        # The token is WeChat's whether or not it is kept: the send that fetched it uses it
        # rather than losing its message, and the next send fetches another.
        applog.log_fields(
            log, logging.WARNING, "wechat access token not cached", error=type(exc).__name__
        )
    return token
