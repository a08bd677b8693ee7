"""The one policy for JSON this system accepts and stores: how deep, how large, and only
finite numbers.

MariaDB's JSON columns (`CHECK (json_valid(...))`) refuse NaN, Infinity and anything nested
deeper than 32; SQLite, the embedded default, stores whatever it is given. So nothing is
written that was not checked here first, on both: a task's input at the API edge (64 KiB,
16 deep, `422 VALIDATION_ERROR` and nothing charged), an upstream's answer before it
becomes a step's output (a failed attempt, retried like a 5xx). What the runner wraps around
a value it accepted adds at most two levels (a fork's `[{"status", "value": ...}]`), so
every stored document stays well inside the database's limit.

JSON from outside that is only read goes through `decode` too, so no nesting reaches a
parser's recursion: WeChat Pay's notification bodies (one refused is not WeChat Pay's) and
API answers (one refused is unusable).

Depth counts objects and arrays only, the outermost one as 1: `{"a": [1]}` is 2 deep.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 16
TASK_INPUT_MAX_BYTES = 64 * 1024
# An upstream answer kept as a step's output (large ones will live in object storage).
STEP_OUTPUT_MAX_BYTES = 1024 * 1024
# A synchronous SCF answer stops at 6 MB (taken as 10^6 bytes each, the smaller reading).
SCF_ANSWER_MAX_BYTES = 6_000_000
# A step's or a task's error message, as compact UTF-8 (app.tasks.lifecycle cuts a longer
# one): every message the runner writes is a sentence of its own, the longest about 170.
ERROR_MESSAGE_MAX_BYTES = 256


class Refused(ValueError):
    """The value breaks the policy; the message says how, and is safe to show."""


def _refuse_constant(name: str) -> Any:
    raise Refused(f"{name} is not a number JSON can carry")


def depth(value: Any) -> int:
    """How deep objects and arrays nest in `value` (0 for a scalar); iterative, so a
    hostile document cannot exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON; a NaN, an infinity or text that is not Unicode (a lone
    surrogate, which JSON's `\\ud800` escapes can carry) is `Refused`."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as error:
        raise Refused("NaN and Infinity are not allowed") from error
    try:
        return text.encode()
    except UnicodeEncodeError as error:
        raise Refused("text that is not valid Unicode (a lone surrogate)") from error


def answer_bytes(value: Any) -> int:
    """The most bytes `value` can take in a synchronous SCF answer. Its JSON is the body, a
    string inside the payload's own JSON: each `"` and `\\` is escaped again, and a runtime
    that writes ASCII only makes each other character a `\\uXXXX` (two for one beyond the
    Basic Multilingual Plane). Up to three times its compact UTF-8 size (an emoji: 4 bytes,
    then 12)."""
    return len(json.dumps(encode(value).decode(), ensure_ascii=True)) - 2


def check(value: Any, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> None:
    """`value` as the policy wants it, or `Refused` saying why."""
    found = depth(value)
    if found > max_depth:
        raise Refused(f"nested {found} deep, at most {max_depth} allowed")
    size = len(encode(value))
    if size > max_bytes:
        raise Refused(f"{size} bytes as compact JSON, at most {max_bytes} allowed")


def decode(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """JSON text as the policy wants it: `Refused` when it is not JSON, holds NaN or
    Infinity, nests too deep or is too large once compact."""
    if len(raw) > 4 * max_bytes:  # not worth parsing: its compact form cannot fit
        raise Refused(f"{len(raw)} bytes, at most {max_bytes} allowed")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except Refused:
        raise
    except (ValueError, RecursionError) as error:
        raise Refused("not valid JSON") from error
    check(value, max_bytes=max_bytes, max_depth=max_depth)
    return value
