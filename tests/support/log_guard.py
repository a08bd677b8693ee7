"""Every log record the suite's code writes, formatted as the JSON line it would be on
stdout, searched for what no log line may hold (README "The invocation's log line"): a key
or secret the environment gives the app, a value a fake hands out (a WeChat session_key or
access_token, an SMS code, a KMS data key), a value a test puts into the vault (PUT
/admin/secrets, which the runner opens and sends upstream), a password a test signs in
with, a bcrypt hash, a PEM block, a JWT, and a stack trace anywhere but the `exception` of
the lines that README and the runbook name for one (an unexpected error at a function's
outermost handler). The test during which such a line was written fails at its teardown,
the line quoted with the secret masked.

A handler on the root logger, so it sees exactly what reaches stdout (the same levels); it
costs one JSON formatting, one regex search and one split into words, each looked up in a
set, per record, however many values the run has remembered (but the few that have no long
word inside them, searched for as they are)."""

from __future__ import annotations

import logging
import os
import re
import threading

from app.observability.logging import LIBRARY_LEVEL, JsonFormatter

# Values no log line may hold, added by the fakes that hand them out and the tests that
# choose them. Kept for the whole run: one test's secret in a later test's line is a leak too.
_remembered: set[str] = set()
_lock = threading.Lock()

# The variables that hold a key or secret (app.config.variables.SEALABLE, less the URLs and
# the providers' public keys, with the two it leaves out): their values, as set when a line
# is written, are searched for.
SECRET_VARIABLES = (
    "JWT_SECRET",
    "JWT_PREVIOUS_SECRET",
    "WECHAT_SECRET",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SECRETKEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "TENCENTCLOUD_SESSIONTOKEN",
    "METRICS_TOKEN",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_APIV3_KEY",
    "ALIPAY_PRIVATE_KEY",
    "LOCAL_MASTER_KEY",
)

# The shapes that are never a log line's whatever their value: a bcrypt hash, a PEM block,
# a JWT (ours, access or refresh; a provider's), a stack trace.
_SHAPES = re.compile(
    r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{10}"
    r"|-----BEGIN"
    r"|eyJ[\w-]{6,}\.eyJ[\w-]{6,}\."
    r"|Traceback \(most recent call last\)"
)

# The lines whose `exception` holds the stack trace of an error nothing below expected: the
# HTTP resolver's 500, a queue message's and a timer job's failure, uvicorn's, the local
# cloud's own.
TRACED_MESSAGES = frozenset(
    {
        "unhandled error",
        "queue message failed",
        "releasing delayed messages failed",
        "job failed",
        "function failed",
        "function failed to load",
        "dev endpoint failed",
        # uvicorn's own, of an ASGI app that raised: the `ws` function's outermost handler,
        # and the local cloud's for a web function that failed to load.
        "Exception in ASGI application\n",
    }
)

# A value made of these is looked for as a whole word of the line (a set lookup per word,
# however many values the run has met); any other (a password with spaces, a base64 key) by
# the longest such piece inside it, when that has PIECE_CHARS or more, or else as a
# substring. An SMS code's six digits are then never found inside a longer number, and the
# run's many random base64 values (the fake KMS's data keys) cost no search each.
_WORD = re.compile(r"[\w-]+")
# Long enough that a random value's piece is in no line by chance, short enough that nearly
# every 32-byte key in base64 (44 characters) has one.
PIECE_CHARS = 12


def remember(*values: str) -> None:
    """No later log line may hold any of `values`."""
    with _lock:
        _remembered.update(v for v in values if v)


# A stored secret's value shorter than this ("v", a validation test's) is a word any line
# may hold: only longer ones are remembered.
MIN_STORED_CHARS = 6


def remember_stored(value: object) -> None:
    """`value` is put into the vault (PUT /admin/secrets/{name}, or a test sealing a row
    itself): no later log line may hold it, as the runner opens it for every call that
    sends it."""
    if isinstance(value, str) and len(value) >= MIN_STORED_CHARS:
        remember(value)


def _inner_piece(value: str) -> str:
    """The longest word of `value` with a non-word character of `value` on at least one side
    (a key's last word before its `=` padding), when it has PIECE_CHARS or more: a line that
    holds `value` holds it as a whole word unless it glues a word character onto `value`,
    which would hide a value that is a word alike. One bounded on both sides, if long
    enough, is preferred: no line hides it."""
    pieces = [
        (found.start() > 0 and found.end() < len(value), found.group(0))
        for found in _WORD.finditer(value)
        if len(found.group(0)) >= PIECE_CHARS and found.group(0) != value
    ]
    return max(pieces, key=lambda piece: (piece[0], len(piece[1])), default=(False, ""))[1]


def _is_app(name: str) -> bool:
    return name == "app" or name.startswith("app.")


class LeakGuard(logging.Handler):
    """Formats each record as stdout would get it and keeps the lines that hold a leak."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(JsonFormatter())
        self.found: list[str] = []
        self._key: tuple[object, ...] = ()
        self._words: frozenset[str] = frozenset()
        self._others: tuple[str, ...] = ()

    def _held(self, line: str) -> str | None:
        """The secret `line` holds, if any."""
        from_env = tuple(
            value
            for name in SECRET_VARIABLES
            if len(value := os.environ.get(name, "")) >= 6 and not value.startswith("secret:")
        )
        with _lock:
            key = (from_env, len(_remembered))
            if key != self._key:
                self._key = key
                words, others = set(), []
                for value in {*from_env, *_remembered}:
                    piece = value if _WORD.fullmatch(value) else _inner_piece(value)
                    if piece:
                        words.add(piece)
                    else:
                        others.append(value)
                self._words, self._others = frozenset(words), tuple(others)
        words = self._words.intersection(_WORD.findall(line))
        if words:
            return next(iter(words))
        return next((value for value in self._others if value in line), None)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < LIBRARY_LEVEL and not _is_app(record.name):
            # A library's DEBUG line, which production never writes (the root stays at
            # LIBRARY_LEVEL): it reaches here only under capture_logs(DEBUG), which lowers
            # the root itself so a test sees the SDKs' bodies too (urllib3's request lines
            # quote jscode2session's app secret).
            return
        try:
            line = self.format(record)
        except Exception:  # the stdout handler reports a record that does not format
            return
        text = line
        if record.exc_info and record.getMessage() in TRACED_MESSAGES:
            # Its trace is the documented one; what the trace quotes is still searched.
            text = line.replace("Traceback (most recent call last)", "")
        shape = _SHAPES.search(text)
        found = shape.group(0) if shape else self._held(text)
        if found:
            masked = text.replace(found, "<" + found[:4] + "...>")
            self.found.append(f"{record.name}: {masked[:2000]}")

    def take(self) -> list[str]:
        found, self.found = self.found, []
        return found
