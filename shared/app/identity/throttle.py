"""Password login attempts, counted per phone and per source IP.

An attempt is reserved before the password is checked, and refused when the phone already
has LOGIN_MAX_FAILURES attempts inside the last LOGIN_LOCK_S or the IP has
LOGIN_FAILURES_PER_IP_PER_HOUR inside the hour; so parallel guesses cannot all pass the
check before any of them is counted. A failed attempt stays counted; a right password (a
disabled account's too) resets the phone's count and gives the IP its attempt back, and an
attempt that was never judged (an error) is given back to both. SMS code login is not
counted here and stays open, so a stranger guessing passwords cannot lock the owner out.

The phone's window slides (`counters.take_sliding`): each failure counts for LOGIN_LOCK_S
from its own time, so no span of LOGIN_LOCK_S holds more than LOGIN_MAX_FAILURES of them,
and a lock lasts until the oldest of them leaves it. (A window starting at the first
failure would let four in at its start, one at its end and five more just after it.) The
IP's hour and the phone's checks are windows from their first count, as other hourly limits
are.

Every password check, the right ones included, also counts against the phone's hour
(LOGIN_PER_PHONE_PER_HOUR): a right password gives its attempt back to the two failure
counts, so without this one account's holder could have a bcrypt check (about 250 ms of CPU
at cost 12) run on every request from one address, without end. A stranger's wrong guesses
alone reach the failure lock first (LOGIN_MAX_FAILURES per LOGIN_LOCK_S: 20 an hour by
default, under the default 30); but each sign-in of the owner resets that lock's count, so
guesses between the owner's sign-ins can fill the hour and close password login on the
phone until it ends. That is no more than the failure lock already lets a stranger do, and
code login stays open through both.

The phone's counter and the IP's are different entities, in different Redis Cluster slots,
so a reservation takes them one after the other (`app.counters`): the phone's
(failures, then checks), then the IP's, giving the earlier ones back when a later one
refuses. What holds, as when one script took both: each counter is checked and counted in
one step, so no number of parallel guesses gets past any limit, and a refusal's
Retry-After is the phone's when several are full. What changed: between the steps an
attempt that a later counter will refuse holds the phone's for a moment (a parallel
attempt on that phone may be refused meanwhile), and if the instance dies between them the
phone keeps it: strict, never lax.

Also the per-IP count of WeChat sign-ins (WECHAT_LOGIN_PER_IP_PER_HOUR): each is a call to
WeChat, and a new code can be a new account.

Also the per-IP count of registered-phone lookups (a register code asked for, which the
contract answers with 409 for a registered phone): that answer is given at most
SMS_PER_IP_PER_HOUR times an hour per IP, so it cannot be harvested for a list of numbers.
Registration itself says nothing about a phone to a caller without its code.

"Per IP" is per client network (`app.addresses.client_network`): an IPv4 address, or an
IPv6 address's /64, inside which one client can take any number of addresses.
"""

from __future__ import annotations

import secrets

from app import counters
from app.addresses import client_network
from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.redis_client import get_redis


def _phone_key(phone: str) -> str:
    return f"login:failures:phone:{phone}"


def _ip_key(ip: str) -> str:
    return f"login:fail:ip:{client_network(ip) or 'unknown'}"


_FAILURES = "Too many failed sign-in attempts"
# Right passwords count toward this one too: it bounds the password checks themselves.
_CHECKS = "Too many password sign-ins for this phone"


def _too_many(retry_after: int, why: str = _FAILURES) -> AppError:
    return AppError(
        ErrorCode.AUTH_TOO_MANY_ATTEMPTS,
        f"{why}; try again later or sign in with an SMS code.",
        headers={"Retry-After": str(max(retry_after, 1))},
    )


def _checks_key(phone: str) -> str:
    return f"login:checks:phone:{phone}"


def reserve(phone: str, ip: str) -> str:
    """Count one attempt for the phone and the IP, or raise AUTH_TOO_MANY_ATTEMPTS. Says
    the attempt's name among the phone's failures, for `release`."""
    settings = get_settings()
    attempt = secrets.token_hex(8)
    failures = _phone_key(phone)
    wait = counters.take_sliding(
        failures, attempt, settings.login_max_failures, settings.login_lock_s
    )
    if wait:
        raise _too_many(wait)
    wait = counters.take(_checks_key(phone), settings.login_per_phone_per_hour, counters.HOUR_S)
    if wait:
        counters.give_back_sliding(failures, attempt)
        raise _too_many(wait, _CHECKS)
    wait = counters.take(_ip_key(ip), settings.login_failures_per_ip_per_hour, counters.HOUR_S)
    if wait:
        counters.give_back(_checks_key(phone))
        counters.give_back_sliding(failures, attempt)
        raise _too_many(wait)
    return attempt


def succeeded(phone: str, ip: str) -> None:
    """The right password: the phone's failures start afresh and the IP gets its attempt
    back; the check stays counted for the phone's hour."""
    get_redis().delete(_phone_key(phone))
    counters.give_back(_ip_key(ip))


def release(phone: str, ip: str, attempt: str) -> None:
    """An attempt (`reserve`'s) that was not judged: every counter gets it back."""
    counters.give_back_sliding(_phone_key(phone), attempt)
    counters.give_back(_checks_key(phone))
    counters.give_back(_ip_key(ip))


def _lookup_key(ip: str) -> str:
    return f"lookup:phone:ip:{client_network(ip) or 'unknown'}"


def take_lookup(ip: str) -> None:
    """Count one registered-phone lookup for the IP, or raise SMS_RATE_LIMITED."""
    message = "Too many requests from this network; try again later."
    limit = get_settings().sms_per_ip_per_hour
    counters.take_hourly(_lookup_key(ip), limit, ErrorCode.SMS_RATE_LIMITED, message)


def _wechat_key(ip: str) -> str:
    return f"wechat:login:ip:{client_network(ip) or 'unknown'}"


def take_wechat_login(ip: str) -> None:
    """Count one WeChat sign-in for the IP, or raise RATE_LIMITED."""
    limit = get_settings().wechat_login_per_ip_per_hour
    message = "Too many WeChat sign-ins from this network; try again later."
    counters.take_hourly(_wechat_key(ip), limit, ErrorCode.RATE_LIMITED, message)
