"""How far each signed-in device has acknowledged: `realtime:acks:{<user>}`, a hash of the
user's session ids (`app.identity.sessions`, one a device) to the id of the latest message
that session acknowledged, which acknowledges every earlier one too (API.md, "WebSocket").

A position is a session's, not the user's: a device that was away while another one
received and acknowledged an update is sent it at its next connect, as the contract has
every message not acknowledged sent again. Connections of one session share a position.

A position only moves forward (`_ADVANCE`): two connections of one session acknowledging
out of order keep the later id. An id beyond the newest message of the user's stream was
never sent and is ignored, so a client cannot skip messages that do not exist yet. The hash
lives as long as the stream (24 h after its last move): past that, `streams.oldest_kept`
bounds what is sent anyway. It holds at most `sessions.MAX_SESSIONS` positions: past that,
those of sessions that have ended are dropped, so signing in over and over leaves nothing
behind. Every key carries the user's tag, so the script runs on a cluster.

A connection moves its position through `Acknowledgements`, which bounds what a client's
acks cost Redis: ACK_BURST scripts at once and ACKS_PER_S after that. An ack past that
allowance is held, merged with any that follow into the latest, and applied when the
allowance has room again or when the connection ends: each ack covers every earlier one,
so merging loses none, and a client that sends acks as fast as it can costs Redis
ACKS_PER_S scripts a second rather than one for each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.identity import sessions
from app.realtime.allowance import Allowance
from app.realtime.streams import KEEP_MS, StreamId, stream_key
from app.redis_client import tag

# A client acks each message it handles: a replay at connect sends up to 1000 at once.
# Within the burst each ack is applied before the next message is read, so an ack the
# client follows with a ping is recorded by the time the pong comes.
ACK_BURST = 20
ACKS_PER_S = 5.0

# KEYS[1] the positions, KEYS[2] the stream, KEYS[3] the user's live sessions; ARGV[1] the
# id, ARGV[2] the key's life in ms, ARGV[3] the session, ARGV[4] how many positions are
# kept before those of ended sessions are dropped.
# 1: the position is at or past the id now; 0: the id is not one of the stream's.
_ADVANCE = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(ams, aseq, bms, bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local ms, seq = parse(ARGV[1])
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #newest == 0 then return 0 end
local nms, nseq = parse(newest[1][1])
if before(nms, nseq, ms, seq) then return 0 end
local held = redis.call('HGET', KEYS[1], ARGV[3])
if held then
  local hms, hseq = parse(held)
  if not before(hms, hseq, ms, seq) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[1])
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) then
  for _, sid in ipairs(redis.call('HKEYS', KEYS[1])) do
    if redis.call('SISMEMBER', KEYS[3], sid) == 0 then redis.call('HDEL', KEYS[1], sid) end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def acks_key(user_id: str) -> str:
    return f"realtime:acks:{tag(user_id)}"


async def advance(client: Any, user_id: str, session_id: str, message_id: StreamId) -> bool:
    """Acknowledge, for the session, `message_id` and everything before it; False when the
    stream has no such message yet (nothing changes)."""
    keys = (acks_key(user_id), stream_key(user_id), sessions.set_key(user_id))
    done = await client.eval(
        _ADVANCE, 3, *keys, str(message_id), KEEP_MS, session_id, sessions.MAX_SESSIONS
    )
    return bool(int(done))


async def position(client: Any, user_id: str, session_id: str) -> StreamId | None:
    """The session's latest acknowledged id, or None when it has acknowledged nothing."""
    held = await client.hget(acks_key(user_id), session_id)
    return None if held is None else StreamId.parse(str(held))


class Acknowledgements:
    """One connection's acks of its session's messages, applied within the allowance.

    Only acks of messages this connection has sent are held and merged: the id past them
    could be one that does not exist yet, which the script would refuse (losing the valid
    acks merged into it) or, once the stream grew past it, take for messages never sent.
    Such an ack is applied alone within the allowance, as before (the script judges it),
    and dropped past it. A held ack stays held until its script has run, so a connection
    that ends while it runs still records it at the end."""

    def __init__(self, client: Any, user_id: str, session_id: str) -> None:
        self.client = client
        self.user_id = user_id
        self.session_id = session_id
        self._allowance = Allowance(ACK_BURST, ACKS_PER_S)
        self._sent: StreamId | None = None  # the newest message this connection has sent
        self._held: StreamId | None = None  # the latest ack past the allowance, not applied
        self._holding = asyncio.Event()

    def sent(self, entry_id: str) -> None:
        """The connection has sent this stream entry (its ids only grow)."""
        self._sent = StreamId.parse(entry_id) or self._sent

    async def ack(self, message_id: StreamId) -> None:
        """Apply the client's ack now while the allowance has room, else hold it."""
        if self._sent is None or self._sent < message_id:
            if self._allowance.take():
                await self._advance(message_id)
            return
        latest = message_id if self._held is None else max(self._held, message_id)
        if self._allowance.take():
            await self._advance(latest)
        else:
            self._held = latest
            self._holding.set()

    async def apply_held(self) -> None:
        """The connection's job: apply the held ack as the allowance refills."""
        while True:
            await self._holding.wait()
            await asyncio.sleep(1 / ACKS_PER_S)
            if self._held is None:  # an ack within the allowance took it meanwhile
                self._holding.clear()
            elif self._allowance.take():
                await self._advance(self._held)

    async def flush(self) -> None:
        """At the connection's end: apply the held ack, whatever the allowance."""
        if self._held is not None:
            await self._advance(self._held)

    async def _advance(self, message_id: StreamId) -> None:
        applied = await advance(self.client, self.user_id, self.session_id, message_id)
        # The held ack, run (or refused for good: the stream no longer has it), or a later
        # one applied, is done with; one held meanwhile, later still, is not.
        held = self._held
        if held is not None and (message_id == held or (applied and held < message_id)):
            self._held = None
            self._holding.clear()
