"""WeChat mini-program login: `jscode2session` through the outbound client, or, with
`APP_ENV=local` only, a sandbox.

The session_key WeChat returns is dropped here: nothing in this system needs it, so it is
never returned, logged or stored. Error codes map to the API's: 40029/40163 (bad or used
code) WECHAT_CODE_INVALID, 45011 WECHAT_RATE_LIMITED, 40226 WECHAT_USER_BLOCKED; -1 (busy)
is retried once, then, like timeouts and anything unexpected, WECHAT_UNAVAILABLE. So is an
answer longer than REPLY_MAX_BYTES, read no further than that: a broken or hostile server
cannot make a sign-in hold its answer in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.observability import logging as applog

log = applog.get_logger("app.identity.wechat")

TIMEOUT_S = 5
# WeChat API answers (jscode2session, the access token, a subscription message's send)
# are a few hundred bytes.
REPLY_MAX_BYTES = 64 * 1024
_ERRORS = {
    40029: (ErrorCode.WECHAT_CODE_INVALID, "The WeChat login code is not valid."),
    40163: (ErrorCode.WECHAT_CODE_INVALID, "The WeChat login code was already used."),
    45011: (ErrorCode.WECHAT_RATE_LIMITED, "Too many WeChat logins; try again in a minute."),
    40226: (ErrorCode.WECHAT_USER_BLOCKED, "WeChat has blocked this account from logging in."),
}


@dataclass(frozen=True)
class WechatIdentity:
    openid: str
    unionid: str | None


def _unavailable() -> AppError:
    return AppError(ErrorCode.WECHAT_UNAVAILABLE, "WeChat login is unavailable; try again.")


def code_to_identity(code: str) -> WechatIdentity:
    settings = get_settings()
    if settings.wechat_api_base:
        return _jscode2session(code)
    # The sandbox signs anyone in with any code, and each new code is a new account with
    # SIGNUP_QUOTA: a laptop only. A deployed stage without WeChat settings has no login.
    if settings.app_env == "local":
        return _sandbox(code)
    applog.log_fields(log, logging.ERROR, "WeChat login is not configured (WECHAT_API_BASE)")
    raise _unavailable()


def _sandbox(code: str) -> WechatIdentity:
    """A stable openid per code, so a laptop can log the same user in again."""
    digest = hmac.new(b"wechat-sandbox", code.encode(), hashlib.sha256).hexdigest()
    return WechatIdentity(openid=f"sandbox-{digest[:24]}", unionid=None)


def _errcode(data: Any) -> int | None:
    """The reply's errcode (0 when absent), or None when the reply is not the JSON object
    WeChat sends, so that anything unexpected is WECHAT_UNAVAILABLE and never a 500."""
    if not isinstance(data, dict):
        return None
    errcode = data.get("errcode")
    if errcode is None:
        return 0
    if isinstance(errcode, int) and not isinstance(errcode, bool):
        return errcode
    return None


def _jscode2session(code: str) -> WechatIdentity:
    from app.outbound.client import CallFailed, call  # cold start: only WeChat sign-in calls out

    settings = get_settings()
    url = settings.wechat_api_base.rstrip("/") + "/sns/jscode2session"
    params = {
        "appid": settings.wechat_appid,
        "secret": settings.wechat_secret.get_secret_value(),
        "js_code": code,
        "grant_type": "authorization_code",
    }
    for attempt in (1, 2):
        try:
            reply = call(
                "GET",
                url,
                params=params,
                timeout_s=TIMEOUT_S,
                public_only=settings.is_production,
                max_bytes=REPLY_MAX_BYTES,
            )
            if reply.cut:  # its start may still parse: what went on is not WeChat's answer
                applog.log_fields(
                    log,
                    logging.ERROR,
                    "jscode2session reply too large",
                    status=reply.status,
                    max_bytes=REPLY_MAX_BYTES,
                )
                raise _unavailable()
            data: Any = reply.json()
        except (CallFailed, ValueError) as exc:
            applog.log_fields(log, logging.ERROR, "jscode2session failed", error=type(exc).__name__)
            raise _unavailable() from None
        errcode = _errcode(data)
        if errcode is None:
            applog.log_fields(
                log, logging.ERROR, "jscode2session reply unreadable", status=reply.status
            )
            raise _unavailable()
        if errcode == -1 and attempt == 1:
            continue
        openid, unionid = data.get("openid"), data.get("unionid")
        if errcode == 0 and isinstance(openid, str) and openid:
            return WechatIdentity(
                openid=openid, unionid=unionid if isinstance(unionid, str) and unionid else None
            )
        if errcode in _ERRORS:
            error, message = _ERRORS[errcode]
            raise AppError(error, message)
        applog.log_fields(
            log, logging.ERROR, "jscode2session refused", errcode=errcode, status=reply.status
        )
        raise _unavailable()
    raise _unavailable()  # pragma: no cover - the loop always returns or raises
