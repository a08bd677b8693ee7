"""Each user's stream of task updates: the outbox the `ws` web function reads.

Key `realtime:stream:{<user>}` (a Redis Stream). Each entry is one `task.updated` message,
its stream id the message id the client sees and acknowledges. A stream holds at most
STREAM_MAX messages and STREAM_MAX_BYTES of their JSON: before each append the oldest
messages are let go until the new one fits both (it is appended whatever its size, alone
if need be). The bytes are counted in `realtime:stream-bytes:{<user>}`, kept by the same
script, since Redis trims a stream by count only: a message carries its task's output
inline up to STORAGE_INLINE_MAX_BYTES (16 KiB), so a count alone let a user's stream reach
16 MiB, held in Redis for a day and replayed whole into the 128 MB instance of each
connection. Every key is given `PEXPIRE` of 24 h after each append, so a user who stops
receiving updates leaves nothing behind a day later. What is delivered is bounded by
time as well: a reader starts no earlier than 24 h ago (`oldest_kept`), since ids are
timestamps, so a message older than a day is never sent even while newer ones keep the key
alive.

Appending happens after the transition has committed: when Redis cannot take it, the
message is lost (logged), and the task itself, `GET /tasks/{id}` and every later message
are unaffected.

One task's messages are in the order of its life. Two transitions of a task committed one
after the other (the worker's `running` and a cancel, each in its own instance) append in
their own time, so the later one's message can be ready first. Each message carries its
task's stage (`announce.STAGE`: running, then an ending), and `_APPEND` adds it only when
the stage is past the last one appended for that task: a message that comes after one about
a later state of its task is dropped, never sent, so an ending is always a task's last
message. The stage is the status's place in the task's life rather than `updated_at`, which
each instance reads from its own clock (two instances' are not ordered), and a task passes
each stage at most once.

The stages are kept for the user's latest STAGES_MAX tasks (`realtime:stages:{<user>}`, task
-> stage, and `realtime:staged:{<user>}`, the tasks in the order of their last message, the
oldest let go first), each key kept 24 h as the stream is: a user's keys stay this size
however many tasks it runs (a key per task, kept a day, would be 100k keys for a user with
100k tasks a day). A late message is one whose transition committed before its task's ending
and pushes after it, a moment later: STAGES_MAX other tasks' messages do not come between.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from app.redis_client import get_redis, tag
from app.storage import outputs

MESSAGE_TYPE = "task.updated"
STREAM_MAX = 1000
# 64 messages whose output is as large as it may be inline, or 1000 small ones.
STREAM_MAX_BYTES = 1024 * 1024
KEEP_MS = 24 * 3600 * 1000
# The task view's fields a message carries (API.md, "WebSocket").
FIELDS = ("id", "status", "output", "error", "updated_at")
_ID = re.compile(r"^(\d{1,19})-(\d{1,19})$")

# How many of a user's tasks have their stage kept: as many as the stream's messages.
STAGES_MAX = STREAM_MAX

# KEYS[1] the stream, KEYS[2] the tasks' stages, KEYS[3] the tasks in order, KEYS[4] the
# stream's bytes; ARGV[1] the message's stage, ARGV[2] its data, ARGV[3] STREAM_MAX, ARGV[4]
# KEEP_MS, ARGV[5] the task, ARGV[6] STAGES_MAX, ARGV[7] STREAM_MAX_BYTES. The message id,
# or false when the task's messages have reached this stage already. The oldest messages
# go one at a time (XDEL of the first entry: a stream frees a node once it is empty), about
# one per append once the stream is full.
_APPEND = """
local appended = redis.call('HGET', KEYS[2], ARGV[5])
if appended and tonumber(appended) >= tonumber(ARGV[1]) then return false end
local size = string.len(ARGV[2])
local count = redis.call('XLEN', KEYS[1])
local held = 0
if count > 0 then held = tonumber(redis.call('GET', KEYS[4]) or '0') or 0 end
while count > 0 and (count >= tonumber(ARGV[3]) or held + size > tonumber(ARGV[7])) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], oldest[1])
  held = held - string.len(oldest[2][2])
  count = count - 1
end
if held < 0 then held = 0 end
local id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
redis.call('SET', KEYS[4], held + size)
redis.call('HSET', KEYS[2], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[3], string.match(id, '^(%d+)'), ARGV[5])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
if over > 0 then
  for _, task in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do
    redis.call('HDEL', KEYS[2], task)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1)
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[4]) end
return id
"""


def stream_key(user_id: str) -> str:
    return f"realtime:stream:{tag(user_id)}"


@dataclass(frozen=True)
class Update:
    """One message as the client receives it."""

    id: str
    data: dict[str, Any]

    def frame(self) -> str:
        return json.dumps(
            {"type": MESSAGE_TYPE, "id": self.id, "data": self.data},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def of_entry(cls, entry_id: str, fields: dict[str, str]) -> Update:
        """The message of a stream entry, an output kept in COS shown as a StoredOutput
        presigned now (the entry holds the task's reference to it)."""
        data = json.loads(fields["data"])
        if data.get("output") is not None and data.get("id"):
            data["output"] = outputs.render(str(data["id"]), data["output"])
        return cls(entry_id, data)


def message_data(view: dict[str, Any]) -> dict[str, Any]:
    return {name: view.get(name) for name in FIELDS}


def bytes_key(user_id: str) -> str:
    return f"realtime:stream-bytes:{tag(user_id)}"


def stages_key(user_id: str) -> str:
    return f"realtime:stages:{tag(user_id)}"


def staged_key(user_id: str) -> str:
    return f"realtime:staged:{tag(user_id)}"


def append(user_id: str, view: dict[str, Any], stage: int) -> str | None:
    """Add the task's update, at `stage` of its life, to its owner's stream; the message
    id, or None when a message about this stage of the task or a later one is there
    already (nothing is added). Raises what Redis raises."""
    data = json.dumps(message_data(view), ensure_ascii=False, separators=(",", ":"))
    keys = [stream_key(user_id), stages_key(user_id), staged_key(user_id), bytes_key(user_id)]
    args = [stage, data, STREAM_MAX, KEEP_MS, str(view.get("id")), STAGES_MAX, STREAM_MAX_BYTES]
    message_id = get_redis().eval(_APPEND, len(keys), *keys, *args)
    return None if message_id is None else str(message_id)


@dataclass(frozen=True, order=True)
class StreamId:
    """A stream id, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> StreamId | None:
        found = _ID.match(text)
        return None if found is None else cls(int(found[1]), int(found[2]))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def oldest_kept(now_ms: int) -> StreamId:
    """Where a reader starts at the earliest: every message newer than this is kept."""
    return StreamId(max(now_ms - KEEP_MS, 0), 0)
