"""Password login attempts, counted per phone and per source IP.

An attempt is reserved before the password is checked, in one script that refuses when
the phone already has LOGIN_MAX_FAILURES attempts inside LOGIN_LOCK_S or the IP has
LOGIN_FAILURES_PER_IP_PER_HOUR inside the hour; so parallel guesses cannot all pass the
check before any of them is counted. A failed attempt stays counted; a successful one
resets the phone's count and gives the IP its attempt back, and an attempt that was never
judged (an error, a disabled account) is given back to both. SMS code login is not counted
here and stays open, so a stranger guessing passwords cannot lock the owner out.

Also the per-IP count of registered-phone lookups (a register code asked for, a
registration tried): whether a phone is registered is answered at most SMS_PER_IP_PER_HOUR
times an hour per IP, so the answer cannot be harvested for a list of numbers.
"""

from __future__ import annotations

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.redis_client import get_redis

_IP_WINDOW_S = 3600

# KEYS: phone counter, IP counter. ARGV: phone limit, phone window, IP limit, IP window.
# A window starts at its counter's first attempt.
_RESERVE = """
local phone = tonumber(redis.call('GET', KEYS[1]) or '0')
if phone >= tonumber(ARGV[1]) then
  return {'refused', redis.call('TTL', KEYS[1])}
end
local ip = tonumber(redis.call('GET', KEYS[2]) or '0')
if ip >= tonumber(ARGV[3]) then
  return {'refused', redis.call('TTL', KEYS[2])}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
return {'ok', 0}
"""

# KEYS: counter. ARGV: limit, window. Counts and says 'ok', or refuses with the TTL.
_TAKE_ONE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return {'refused', redis.call('TTL', KEYS[1])}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return {'ok', 0}
"""

# KEYS: counters to give one attempt back to. A counter that expired meanwhile stays gone
# (DECR would recreate it without a TTL).
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 1
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


def reserve(phone: str, ip: str) -> None:
    """Count one attempt for the phone and the IP, or raise AUTH_TOO_MANY_ATTEMPTS."""
    settings = get_settings()
    verdict, ttl = get_redis().eval(
        _RESERVE,
        2,
        _phone_key(phone),
        _ip_key(ip),
        settings.login_max_failures,
        settings.login_lock_s,
        settings.login_failures_per_ip_per_hour,
        _IP_WINDOW_S,
    )
    if verdict != "ok":
        raise _too_many(int(ttl))


def succeeded(phone: str, ip: str) -> None:
    """The right password: the phone starts afresh and the IP gets its attempt back."""
    redis = get_redis()
    redis.delete(_phone_key(phone))
    redis.eval(_GIVE_BACK, 1, _ip_key(ip))


def release(phone: str, ip: str) -> None:
    """An attempt that was not a failure: both counters get it back."""
    get_redis().eval(_GIVE_BACK, 2, _phone_key(phone), _ip_key(ip))


def _lookup_key(ip: str) -> str:
    return f"lookup:phone:ip:{ip or 'unknown'}"


def take_lookup(ip: str) -> None:
    """Count one registered-phone lookup for the IP, or raise SMS_RATE_LIMITED."""
    verdict, ttl = get_redis().eval(
        _TAKE_ONE, 1, _lookup_key(ip), get_settings().sms_per_ip_per_hour, _IP_WINDOW_S
    )
    if verdict != "ok":
        raise AppError(
            ErrorCode.SMS_RATE_LIMITED,
            "Too many requests from this network; try again later.",
            headers={"Retry-After": str(max(int(ttl), 1))},
        )
