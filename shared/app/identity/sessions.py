"""Refresh sessions, one per signed-in device, and their rotation.

Redis holds `refresh:{<user>}:<sid>` -> the session's current refresh jti (TTL = refresh
lifetime) and `sessions:{<user>}`, the set of the user's sids. Rotation is one Lua script, so
of any number of concurrent refreshes of one token exactly one mints the next pair; the
others, for `REFRESH_GRACE_S`, receive that same pair (stored at
`refresh:grace:{<user>}:<sid>:<old jti>`; its tokens are never logged). A retired token
after the grace window is reuse: the session is ended (Auth0's reuse detection).

A user keeps at most MAX_SESSIONS live sessions: a sign-in beyond them ends the one least
recently started or refreshed (the shortest time left to live). Without the bound every
sign-in adds a member to the user's set that stays for the refresh lifetime, and the script
that starts a session reads the whole set: an account signing in over and over, as a script
holding its password can, would make each of its sign-ins a longer stall of the one Redis
every request goes through.

Every key of a user carries the user id as its hash tag (`{<user>}`), so the scripts below,
which touch a user's sessions, grace keys and set together, run whole on one Redis Cluster
node, as on a single Redis. The names before the tags were `refresh:<user>:<sid>`,
`refresh:grace:<user>:<sid>:<jti>` and `sessions:<user>`: sessions stored under them are
not read, so each user signs in once more after the release that tagged them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.identity import tokens
from app.redis_client import get_redis, tag

REFRESH_GRACE_S = 30

# KEYS: session key, grace key of the presented jti, the user's session set.
# ARGV: presented jti, new jti, session ttl, new pair (JSON), grace ttl, sid.
_ROTATE = """
local current = redis.call('GET', KEYS[1])
if not current then
  return {'invalid'}
end
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], ARGV[4], 'EX', tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
  return {'rotated'}
end
local pair = redis.call('GET', KEYS[2])
if pair then
  return {'grace', pair}
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[6])
return {'reused'}
"""

# KEYS: the user's session set. ARGV: key prefix of the user's sessions (the session keys
# it names carry the set's hash tag, so they are in its slot).
_END_ALL = """
local sids = redis.call('SMEMBERS', KEYS[1])
for _, sid in ipairs(sids) do
  redis.call('DEL', ARGV[1] .. sid)
end
redis.call('DEL', KEYS[1])
return sids
"""

MAX_SESSIONS = 100

# KEYS: new session key, the user's session set. ARGV: jti, ttl, sid, key prefix, the most
# sessions kept. Members whose session key has expired are dropped; of the live ones, those
# with the least time left are ended until the new one fits. Returns the sids it ended.
_START = """
local live = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local left = redis.call('PTTL', ARGV[4] .. sid)
  if left == -2 then
    redis.call('SREM', KEYS[2], sid)
  else
    table.insert(live, {sid, left})
  end
end
local ended = {}
local over = #live - tonumber(ARGV[5]) + 1
if over > 0 then
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, over do
    redis.call('DEL', ARGV[4] .. live[i][1])
    redis.call('SREM', KEYS[2], live[i][1])
    table.insert(ended, live[i][1])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return ended
"""


@dataclass(frozen=True)
class Pair:
    access_token: str
    refresh_token: str
    sid: str  # the session both belong to


def _prefix(user_id: str) -> str:
    return f"refresh:{tag(user_id)}:"


def session_key(user_id: str, sid: str) -> str:
    return _prefix(user_id) + sid


def set_key(user_id: str) -> str:
    return f"sessions:{tag(user_id)}"


def grace_key(user_id: str, sid: str, jti: str) -> str:
    return f"refresh:grace:{tag(user_id)}:{sid}:{jti}"


def new_sid() -> str:
    return secrets.token_urlsafe(12)


def _mint(user_id: str, role: str, phone: str | None, sid: str) -> tuple[Pair, str]:
    access, _ = tokens.issue("access", user_id=user_id, role=role, sid=sid, phone=phone)
    refresh, claims = tokens.issue("refresh", user_id=user_id, role=role, sid=sid, phone=phone)
    return Pair(access, refresh, sid), str(claims["jti"])


def start(user_id: str, *, role: str, phone: str | None) -> Pair:
    """A new session (one device) and its first pair."""
    sid = new_sid()
    pair, jti = _mint(user_id, role, phone, sid)
    ttl = get_settings().refresh_token_ttl_s
    ended_sids = get_redis().eval(
        _START,
        2,
        session_key(user_id, sid),
        set_key(user_id),
        jti,
        ttl,
        sid,
        _prefix(user_id),
        MAX_SESSIONS,
    )
    if ended_sids:
        from app.identity import ended  # cold start: only a sign-in past the bound loads it

        ended.record(user_id, [str(s) for s in ended_sids])
    return pair


def refresh_claims(token: str) -> dict[str, Any]:
    """Claims of a well-formed refresh token; anything else is AUTH_REFRESH_INVALID."""
    try:
        return tokens.decode(token, "refresh")
    except AppError as exc:
        raise AppError(ErrorCode.AUTH_REFRESH_INVALID, "The refresh token is not valid.") from exc


def rotate(claims: dict[str, Any], *, role: str, phone: str | None) -> Pair:
    """The session's next pair, or within the grace window the pair already minted."""
    user_id, sid, jti = str(claims["sub"]), str(claims["sid"]), str(claims["jti"])
    pair, new_jti = _mint(user_id, role, phone, sid)
    stored = json.dumps({"access_token": pair.access_token, "refresh_token": pair.refresh_token})
    outcome = get_redis().eval(
        _ROTATE,
        3,
        session_key(user_id, sid),
        grace_key(user_id, sid, jti),
        set_key(user_id),
        jti,
        new_jti,
        get_settings().refresh_token_ttl_s,
        stored,
        REFRESH_GRACE_S,
        sid,
    )
    verdict = outcome[0]
    if verdict == "rotated":
        return pair
    if verdict == "grace":
        earlier = json.loads(outcome[1])
        return Pair(earlier["access_token"], earlier["refresh_token"], sid)
    if verdict == "reused":
        from app.identity import ended  # cold start: only a reuse loads the database layer

        ended.record(user_id, [sid])
        raise AppError(
            ErrorCode.AUTH_REFRESH_REUSED,
            "This refresh token was already used; the session has been ended.",
        )
    raise AppError(ErrorCode.AUTH_REFRESH_INVALID, "The session has ended; sign in again.")


# Ending a session: Redis first, then the database. Redis is what requests are authorized
# by while it answers, so a failure there refuses the change (503) with nothing ended; the
# database's copy (app.identity.ended) is what answers while Redis cannot.


def end(user_id: str, sid: str) -> None:
    from app.identity import ended  # cold start: only an ending loads the database layer

    redis = get_redis()
    redis.delete(session_key(user_id, sid))
    redis.srem(set_key(user_id), sid)
    ended.record(user_id, [sid])


def end_all(user_id: str) -> int:
    """End every session of the user; returns how many there were."""
    from app.identity import ended  # cold start: only an ending loads the database layer

    sids = [str(sid) for sid in get_redis().eval(_END_ALL, 1, set_key(user_id), _prefix(user_id))]
    ended.record(user_id, sids)
    return len(sids)


def active(user_id: str) -> set[str]:
    """The sids of the user's live sessions."""
    redis = get_redis()
    return {
        sid for sid in redis.smembers(set_key(user_id)) if redis.exists(session_key(user_id, sid))
    }
