"""How far each user has acknowledged: `realtime:ack:{<user>}` holds the id of the latest
message acknowledged, which acknowledges every earlier one too (API.md, "WebSocket").

The position only moves forward (`_ADVANCE`): two connections of one user acknowledging out
of order keep the later id. An id beyond the newest message of the user's stream was never
sent and is ignored, so a client cannot skip messages that do not exist yet. The key lives
as long as the stream (24 h after its last move): past that, `streams.oldest_kept` bounds
what is sent anyway. Both keys carry the user's tag, so the script runs on a cluster.
"""

from __future__ import annotations

from typing import Any

from app.realtime.streams import KEEP_MS, StreamId, stream_key
from app.redis_client import tag

# KEYS[1] the position, KEYS[2] the stream; ARGV[1] the id, ARGV[2] the key's life in ms.
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
local held = redis.call('GET', KEYS[1])
if held then
  local hms, hseq = parse(held)
  if not before(hms, hseq, ms, seq) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def ack_key(user_id: str) -> str:
    return f"realtime:ack:{tag(user_id)}"


async def advance(client: Any, user_id: str, message_id: StreamId) -> bool:
    """Acknowledge `message_id` and everything before it; False when the stream has no
    such message yet (nothing changes)."""
    done = await client.eval(
        _ADVANCE, 2, ack_key(user_id), stream_key(user_id), str(message_id), KEEP_MS
    )
    return bool(int(done))


async def position(client: Any, user_id: str) -> StreamId | None:
    """The latest acknowledged id, or None when nothing is acknowledged."""
    held = await client.get(ack_key(user_id))
    return None if held is None else StreamId.parse(str(held))
