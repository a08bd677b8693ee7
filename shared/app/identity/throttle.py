"""Failed password logins, counted per phone and per source IP.

A phone with LOGIN_MAX_FAILURES failures inside LOGIN_LOCK_S is refused password login
until that window passes; SMS code login is not counted here and stays open, so a
stranger guessing passwords cannot lock the owner out. An IP with
LOGIN_FAILURES_PER_IP_PER_HOUR failures is refused password login for the hour.
"""

from __future__ import annotations

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.redis_client import get_redis

_IP_WINDOW_S = 3600

# KEYS: counter. ARGV: window. The window starts at the first failure.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return n
"""


def _phone_key(phone: str) -> str:
    return f"login:fail:phone:{phone}"


def _ip_key(ip: str) -> str:
    return f"login:fail:ip:{ip or 'unknown'}"


def _too_many(retry_after: int) -> AppError:
    return AppError(
        ErrorCode.AUTH_TOO_MANY_ATTEMPTS,
        "Too many failed sign-in attempts; try again later or sign in with an SMS code.",
        headers={"Retry-After": str(max(retry_after, 1))},
    )


def check(phone: str, ip: str) -> None:
    """Raise AUTH_TOO_MANY_ATTEMPTS before a password is even checked."""
    settings = get_settings()
    redis = get_redis()
    pipe = redis.pipeline(transaction=False)
    pipe.get(_phone_key(phone))
    pipe.ttl(_phone_key(phone))
    pipe.get(_ip_key(ip))
    pipe.ttl(_ip_key(ip))
    phone_count, phone_ttl, ip_count, ip_ttl = pipe.execute()
    if int(phone_count or 0) >= settings.login_max_failures:
        raise _too_many(int(phone_ttl))
    if int(ip_count or 0) >= settings.login_failures_per_ip_per_hour:
        raise _too_many(int(ip_ttl))


def record_failure(phone: str, ip: str) -> None:
    redis = get_redis()
    redis.eval(_COUNT, 1, _phone_key(phone), get_settings().login_lock_s)
    redis.eval(_COUNT, 1, _ip_key(ip), _IP_WINDOW_S)


def record_success(phone: str) -> None:
    get_redis().delete(_phone_key(phone))
