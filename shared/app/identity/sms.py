"""SMS verification codes: issue, rate-limit, verify once.

A code is 6 digits from `secrets`, kept in Redis only as an HMAC (keyed with the JWT
secret, bound to phone and purpose) for SMS_CODE_TTL_S, at `sms:code:<purpose>:<phone>`.
While signing keys rotate, a guess is also checked as keyed with JWT_PREVIOUS_SECRET, so a
code stored by an instance on either side of the rotation matches on the other.
It is single use and burnt after MAX_WRONG_TRIES wrong guesses (a request refused for
something else after its right code was checked counts as one: `strike`), and the wrong
guesses of one client network, over every phone, are bounded per hour
(SMS_CODE_FAILURES_PER_IP_PER_HOUR, `_judged`). The code itself goes to the delivery
adapter and nowhere else: never into a log line, a response or an exception message.

Before a code is sent, four limits are checked and counted: a cooldown per phone, a daily
count per phone (China day), an hourly count per source IP, and an hourly budget across
every phone and IP (SMS_GLOBAL_PER_HOUR: what an attacker spreading requests over many
numbers and addresses could otherwise spend on SMS). A phone, an IP and the budget are
different entities whose keys cannot honestly share a Redis Cluster slot, so this is three
steps: first the phone's cooldown and day count, checked and taken in one script (both keys
carry the phone as hash tag: `sms:cooldown:{<phone>}`, `sms:day:{<phone>}:<day>`, the day
count ending with its China day), then the IP's count and then the budget's (`app.counters`;
hourly counters are named for their clock hour and end with it). A later step's refusal
gives back what the earlier steps took, and so does a delivery that fails, all but the IP's
count (and the phone's, when the provider refused the number). What holds, as when one
script took all three: no limit is ever passed, by any number of parallel requests (each
counter is checked and counted in one step), and the refusal names the first limit reached
in the order cooldown, day, IP, budget. What changed: between the two steps a request that
the IP will refuse holds the phone's cooldown for a moment, and a request for that phone
meanwhile is told to wait; if the instance dies between the steps, the phone keeps that
cooldown and count, so the limits err on the strict side. Before the tags the phone's keys
were `sms:cooldown:<phone>` and `sms:day:<phone>:<day>`: with the release that tagged them
every phone's cooldown and day count started afresh, once (and while two releases ran side
by side, each counted on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from app import counters
from app.addresses import client_network
from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.identity import sms_delivery
from app.observability import logging as applog
from app.redis_client import get_redis, tag

log = applog.get_logger("app.identity.sms")

Purpose = Literal["login", "register"]
MAX_WRONG_TRIES = 5
_CHINA = timezone(timedelta(hours=8))

# KEYS: cooldown, day counter (one phone's, so one slot). ARGV: cooldown s, per day, the
# rest of the day (s), a token that marks this take's cooldown.
_TAKE_PHONE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'cooldown', redis.call('PTTL', KEYS[1])}
end
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if day >= tonumber(ARGV[2]) then
  return {'day', redis.call('PTTL', KEYS[2])}
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', tonumber(ARGV[1]))
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
return {'ok', 0}
"""

# KEYS: cooldown, day counter. ARGV: the take's token. Its cooldown (if still its own) and
# its count, given back; a day counter that expired meanwhile stays gone, and one given
# back to zero goes (`app.counters` says why).
_GIVE_BACK_PHONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 and redis.call('DECR', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
end
return 1
"""

# KEYS: code key. ARGV: the digest a send stored. Its code dropped only while still its own:
# a send whose delivery failed after a newer send stored its code leaves that code be.
_DROP_CODE = """
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: code key. ARGV: digest of the guess, wrong tries allowed, what a right guess does:
# 'use' (burnt), 'keep' (left for a later 'use': the request has more to check first) or
# 'strike' (counted as a wrong try: the request it came with was refused), the guess's
# digest under the previous JWT secret ('' when none is set). 1 = right.
_VERIFY = """
local digest = redis.call('HGET', KEYS[1], 'h')
if not digest then
  return 0
end
local right = digest == ARGV[1] or (ARGV[4] ~= '' and digest == ARGV[4])
if right and ARGV[3] == 'use' then
  redis.call('DEL', KEYS[1])
  return 1
end
if right and ARGV[3] == 'keep' then
  return 1
end
if redis.call('HINCRBY', KEYS[1], 'tries', 1) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
if right then
  return 1
end
return 0
"""

_LIMIT_MESSAGES = {
    "cooldown": "Wait before asking for another code.",
    "day": "Too many codes for this phone today.",
    "ip": "Too many codes requested from this network; try again later.",
    "global": "Too many codes are being sent; try again later.",
}


def _code_key(phone: str, purpose: str) -> str:
    return f"sms:code:{purpose}:{phone}"


def cooldown_key(phone: str) -> str:
    return f"sms:cooldown:{tag(phone)}"


def _digest(phone: str, purpose: str, code: str, secret: str) -> str:
    return hmac.new(
        secret.encode(), f"{purpose}:{phone}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def masked(phone: str) -> str:
    """A phone as logs may show it."""
    return phone[:6] + "****" + phone[-2:]


@dataclass(frozen=True)
class _Taken:
    """What a send took of the phone's limits and the budget: given back when nothing was
    sent."""

    phone_keys: tuple[str, str]
    token: str
    budget_key: str


def _take_quota(phone: str, ip: str) -> _Taken:
    settings = get_settings()
    now = datetime.now(_CHINA)
    phone_keys = (cooldown_key(phone), f"sms:day:{tag(phone)}:{now:%Y%m%d}")
    # An IPv6 client counts as its /64 (app.identity.throttle says why).
    ip_key = f"sms:ip:{client_network(ip) or 'unknown'}:{now:%Y%m%d%H}"
    token = secrets.token_hex(8)
    verdict, pttl_ms = get_redis().eval(
        _TAKE_PHONE,
        2,
        *phone_keys,
        settings.sms_cooldown_s,
        settings.sms_per_phone_per_day,
        _rest_of_day(now),
        token,
    )
    wait = counters.wait_s(int(pttl_ms))
    if verdict == "ok":
        wait = counters.take(ip_key, settings.sms_per_ip_per_hour, _rest_of_hour(now))
        if wait:
            verdict = "ip"
        else:
            # Every phone and IP within its limits can still pump messages by the thousand
            # across numbers: the account's budget is the last word.
            wait = counters.take(budget_key(now), settings.sms_global_per_hour, _rest_of_hour(now))
            if wait:
                verdict = "global"
                counters.give_back(ip_key)
        if wait:
            get_redis().eval(_GIVE_BACK_PHONE, 2, *phone_keys, token)
    if verdict != "ok":
        if verdict == "global":
            applog.log_fields(log, logging.WARNING, "sms global budget reached")
        raise AppError(
            ErrorCode.SMS_RATE_LIMITED,
            _LIMIT_MESSAGES[verdict],
            headers={"Retry-After": str(wait)},
        )
    return _Taken(phone_keys, token, budget_key(now))


def _give_back(taken: _Taken, failure: sms_delivery.DeliveryFailed) -> None:
    """A send that sent nothing gives back the budget (nothing was paid for). When SendSms
    itself failed, the phone's cooldown (while still this send's) and day count too, so that
    an outage closes no phone for the day, nor the hour for every phone. When the provider
    refused the number, the phone's limits stay taken: asking again soon is refused again, and
    they bound the calls made for it. The IP's count always stays: it bounds the calls one
    network makes while nothing is sent."""
    if not failure.number_refused:
        get_redis().eval(_GIVE_BACK_PHONE, 2, *taken.phone_keys, taken.token)
    counters.give_back(taken.budget_key)


def budget_key(now: datetime) -> str:
    """The hourly budget's counter: named for its clock hour (China time)."""
    return f"sms:global:{now:%Y%m%d%H}"


def _rest_of_day(now: datetime) -> int:
    """Seconds to the end of the China day a phone's day counter is named for: its window,
    so that the day's refusal says to wait until midnight (the next day's counter), not the
    two days the counter was once kept."""
    return 86400 - (now.hour * 3600 + now.minute * 60 + now.second)


def _rest_of_hour(now: datetime) -> int:
    """Seconds to the end of the clock hour an hourly counter is named for: its window, so
    that a refusal's Retry-After is when the next hour's counter takes over."""
    return 3600 - (now.minute * 60 + now.second)


@dataclass(frozen=True)
class CodeSent:
    """A code on its way: how long until the phone may ask again, and how long it is good."""

    cooldown_s: int
    expires_in: int


def send(phone: str, purpose: Purpose, ip: str) -> CodeSent:
    """Issue and deliver a code."""
    settings = get_settings()
    taken = _take_quota(phone, ip)
    code = new_code()
    key = _code_key(phone, purpose)
    redis = get_redis()
    pipe = redis.pipeline(transaction=True)
    pipe.delete(key)
    digest = _digest(phone, purpose, code, settings.jwt_secret.get_secret_value())
    pipe.hset(key, mapping={"h": digest, "tries": 0})
    pipe.expire(key, settings.sms_code_ttl_s)
    pipe.execute()
    try:
        sms_delivery.deliver(phone, code)
    except sms_delivery.DeliveryFailed as exc:
        # Nothing was sent: drop the code and give back what the send took, so the user can
        # retry (the code's key has no tag, and is the same in every release).
        redis.eval(_DROP_CODE, 1, key, digest)
        _give_back(taken, exc)
        # A number the provider refuses is the client's to send (an alarm on ERROR must not
        # page on it); SendSms failing is ours.
        level = logging.WARNING if exc.number_refused else logging.ERROR
        applog.log_fields(log, level, "sms not sent", phone=masked(phone), reason=exc.reason)
        raise AppError(
            ErrorCode.SERVICE_UNAVAILABLE, "The code could not be sent; try again shortly."
        ) from None
    applog.log_fields(log, logging.INFO, "sms code sent", phone=masked(phone), purpose=purpose)
    return CodeSent(cooldown_s=settings.sms_cooldown_s, expires_in=settings.sms_code_ttl_s)


def _verify(phone: str, purpose: Purpose, code: str, mode: str) -> bool:
    digests = [_digest(phone, purpose, code, secret) for secret in get_settings().jwt_secrets]
    previous = digests[1] if len(digests) > 1 else ""
    key = _code_key(phone, purpose)
    right = get_redis().eval(_VERIFY, 1, key, digests[0], MAX_WRONG_TRIES, mode, previous)
    return int(right) == 1


def _invalid() -> AppError:
    return AppError(ErrorCode.SMS_CODE_INVALID, "The code is wrong or has expired.")


def _guesses_key(ip: str) -> str:
    return f"sms:guesses:ip:{client_network(ip) or 'unknown'}"


def _judged(phone: str, purpose: Purpose, code: str, ip: str, mode: str) -> None:
    """A client's guess at a code, counted against its network's hour.

    A code allows MAX_WRONG_TRIES guesses, but one client cycling over many phones, each
    with a code (its own or a stranger's), would guess without end: its wrong guesses are
    bounded per network, as password failures are (app.identity.throttle). Taken before the
    code is looked at, so parallel guesses cannot outrun the limit; a right code gives it
    back, so only wrong ones count."""
    key = _guesses_key(ip)
    limit = get_settings().sms_code_failures_per_ip_per_hour
    message = "Too many wrong codes from this network; try again later."
    counters.take_hourly(key, limit, ErrorCode.AUTH_TOO_MANY_ATTEMPTS, message)
    try:
        right = _verify(phone, purpose, code, mode)
    except Exception:
        counters.give_back(key)
        raise
    if not right:
        raise _invalid()  # the guess stays counted
    counters.give_back(key)


def consume(phone: str, purpose: Purpose, code: str, ip: str) -> None:
    """Accept the code once, or SMS_CODE_INVALID (wrong, used, expired or burnt); a network
    past its wrong guesses is AUTH_TOO_MANY_ATTEMPTS."""
    _judged(phone, purpose, code, ip, "use")


def check(phone: str, purpose: Purpose, code: str, ip: str) -> None:
    """The code is right, or SMS_CODE_INVALID (a wrong guess counted, as `consume` counts
    it); a right code is left in place, for `use` once the rest of the request holds, or
    `strike` when it does not."""
    _judged(phone, purpose, code, ip, "keep")


def use(phone: str, purpose: Purpose, code: str) -> None:
    """Use the code `check` accepted, or SMS_CODE_INVALID: a parallel request used it
    first (or struck it out)."""
    if not _verify(phone, purpose, code, "use"):
        raise _invalid()


def strike(phone: str, purpose: Purpose, code: str) -> None:
    """A right code came with a request refused for something else: one wrong try. The
    code stays for the request put right, but cannot be reused without end to try
    other values of what was refused (an invite code, say)."""
    _verify(phone, purpose, code, "strike")
