"""The suite's log guard (tests.support.log_guard) finds what no log line may hold, and
lets through the lines that may: run on a guard of its own, so its findings fail nothing."""

from __future__ import annotations

import logging
import secrets
import sys

import bcrypt

from tests.support import log_guard
from tests.support.log_guard import LeakGuard
from tests.support.settings import settings_env


def record(
    message: str, *, name: str = "app.somewhere", level: int = logging.INFO, **fields: object
) -> logging.LogRecord:
    line = logging.LogRecord(name, level, __file__, 1, message, None, None)
    line.fields = fields  # type: ignore[attr-defined]
    return line


def failed_with(text: str) -> logging.LogRecord:
    try:
        raise RuntimeError(text)
    except RuntimeError:
        line = record("unhandled error", level=logging.ERROR)
        line.exc_info = sys.exc_info()
        return line


def found(*records: logging.LogRecord) -> list[str]:
    guard = LeakGuard()
    for each in records:
        guard.emit(each)
    return guard.take()


def test_the_run_has_its_guard_on_the_root_logger() -> None:
    assert any(isinstance(h, LeakGuard) for h in logging.getLogger().handlers)


def test_ordinary_lines_pass() -> None:
    code = f"{secrets.randbelow(10**6):06d}"
    log_guard.remember(code)
    assert (
        found(
            record("invocation", route="/auth/login", status=200, request_id=secrets.token_hex(16)),
            record("sms code sent", phone="+86139****74", n=int("9" + code)),  # a longer number
            failed_with("nothing secret"),  # a 500's documented trace
        )
        == []
    )


def test_secrets_hashes_keys_tokens_and_traces_are_found() -> None:
    session_key = secrets.token_urlsafe(18)
    code = f"{secrets.randbelow(10**6):06d}"
    log_guard.remember(session_key, code)
    master = secrets.token_urlsafe(32)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    with settings_env(LOCAL_MASTER_KEY=master):
        lines = found(
            record("x", session_key=session_key),
            record("x", reason=f"code {code} wrong"),
            record("x", key=master),
            record("x", row={"password_hash": hashed}),
            record("x", pem="-----BEGIN PRIVATE KEY-----\nMII"),
            record("x", token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln"),
            record("x", error="Traceback (most recent call last):\n  File"),
            failed_with(f"the key was {session_key}"),  # a trace's text is searched too
        )
    assert len(lines) == 8
    assert not any(s in line for line in lines for s in (session_key, master, hashed))


def test_a_trace_outside_the_outermost_handlers_is_found() -> None:
    line = failed_with("nothing secret")
    line.msg = "retrying"
    assert len(found(line)) == 1


def test_a_librarys_debug_line_production_never_writes_is_not_judged() -> None:
    key = secrets.token_urlsafe(18)
    log_guard.remember(key)
    assert found(record(f"GET /x?secret={key}", name="urllib3.connectionpool", level=10)) == []
    assert len(found(record(f"GET /x?secret={key}", name="app.outbound", level=10))) == 1


def test_a_value_that_is_no_word_is_found_by_a_long_word_of_it_or_as_it_is() -> None:
    inner = f"{secrets.token_hex(3)}+{secrets.token_hex(8)}/{secrets.token_hex(2)}="
    padded = f"{secrets.token_hex(12)}="  # a key's one word, before its padding
    spaced = f"my {secrets.token_hex(2)} pass"  # no long word: searched for as it is
    log_guard.remember(inner, padded, spaced)
    lines = found(
        record("x", key=f"k={inner}"), record("x", key=f"Basic {padded}"), record("x", p=spaced)
    )
    assert len(lines) == 3
    assert not any(s in line for line in lines for s in (inner, padded, spaced))
