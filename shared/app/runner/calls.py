"""One unit of work against the outside: an `http` call with its retries, or a `sim` step,
and the upstream host slots the calls hold.

The rules of the contract: POST JSON with `Idempotency-Key`; timeouts (a 408 included), 5xx,
429 and a 2xx whose body is not JSON the system can store (`app.json_values`: not JSON, NaN
or Infinity, too deep, too large, more than ANSWER_MAX_BYTES read) are retried with
exponential backoff from 0.5 s (429/503 `Retry-After` honoured up to 60 s), and so is a
secret of its headers that cannot be had now (KMS down: the step's error says only that a
secret is not available, the log says which and why); other 4xx are not, nor is a header
whose filled value no header can carry (CR, LF, beyond Latin-1: the step fails naming the
header); a step is called at most `1 + retries` times in all, counted in its row so a
re-queued or taken-over step keeps the count. A secret the call sent is `[secret]` wherever
the answer holds it (an upstream that echoes its request). Each call holds an
upstream host slot; no free slot, or a wait longer than INLINE_WAIT_MAX_S, ends the
invocation with `Requeue` instead of sleeping inside the function. A call ends by its
timeout in all (`app.outbound.deadline`), not only per socket read, so it never outlives
the lease of its slot (timeout + SLOT_LEASE_MARGIN_S). Redirects are not followed: a
redirect could lead off the allow-list.

Owns: the call and its retries, the outcomes (`Outcome`), and taking, renewing and giving
back a call's host slot. Never touches a step row: each further call is counted through the
`RecordAttempt` the caller hands over, which fences it with the row's lease.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from app import json_values
from app.clock import run_budget_s
from app.config import get_settings
from app.observability import logging as applog
from app.observability.metrics import PIPELINE_CALLS
from app.pipeline.definition import HttpCall, SimCall, sendable_header_value
from app.redis_client import is_redis_error
from app.runner import slots
from app.tasks.lifecycle import step_failed
from app.vault import referenced
from app.vault import store as vault_store

BACKOFF_BASE_S = 0.5
RETRY_AFTER_MAX_S = 60.0
INLINE_WAIT_MAX_S = 2.0
SLOT_RETRY_S = 0.2
SLOT_LEASE_MARGIN_S = 5.0
# A held slot is renewed before a further call once its lease has lost this much (see
# `still_held`): one Redis round trip per second of calls instead of per call.
SLOT_REUSE_S = 1.0
# The most an invocation of the worker spends calling out: another call that might not fit
# hands over to a fresh invocation instead. Less when the invocation ends sooner than
# AFTER_LAST_CALL_S after it (`budget_ends_at`).
INVOCATION_BUDGET_S = 240.0
# What the worker may still spend once its last call ended: the output kept in COS (a put
# takes up to 21 s with its retry, app.storage.cos), the settle (a lock wait of
# DB_LOCK_WAIT_TIMEOUT_S; another try only while it fits, app.db.conflicts), the next
# message's or the fork's dispatches' invokes (up to 5 s each), the end of the task, and
# the queue adapter's release of delayed messages. pipeline-worker's timeout is at least
# INVOCATION_BUDGET_S plus this (serverless.yml; a test keeps it so).
AFTER_LAST_CALL_S = 60.0
# The most of an answer's body read: `json_values.decode` parses no more than this, so a
# longer one could never become an output, and reading it whole would hold it in memory.
ANSWER_MAX_BYTES = 4 * json_values.STEP_OUTPUT_MAX_BYTES
# What a step's error says when a secret it sends cannot be had: the details go to the log.
CREDENTIAL_UNAVAILABLE = "a secret the step sends is not available"

log = applog.get_logger(__name__)


@dataclass(frozen=True)
class Succeeded:
    output: Any


@dataclass(frozen=True)
class Failed:
    error: dict[str, Any]


@dataclass(frozen=True)
class Requeue:
    """Hand the step to a fresh message `delay_s` from now. `unmade`: the last call counted
    was not made (its slot was lost while the count committed, or Redis could not say),
    so its count is taken back with the park and the step still gets 1 + retries calls."""

    delay_s: float
    unmade: bool = False


@dataclass(frozen=True)
class Abandoned:
    """The step stopped being ours (cancelled, or taken over): drop whatever we hold."""


Outcome = Succeeded | Failed | Requeue | Abandoned
Result = Succeeded | Failed  # an outcome a row records
# Called before each upstream call: counts it in the step's row; False = no longer ours.
RecordAttempt = Callable[[], bool]


@dataclass(frozen=True)
class _Answer:
    output: Any = None
    ok: bool = False
    retryable: bool = False
    retry_after: float | None = None
    message: str = ""


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped at 60 s; None
    (the backoff applies) for what is neither. A negative delay is no delay-seconds: read
    as 0 it would call a host that answered 429 again at once, without any backoff. A date
    already past is valid and means now."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, IndexError):
            return None
    if not seconds >= 0:  # negative, or NaN
        return None
    return min(seconds, RETRY_AFTER_MAX_S)


@dataclass(frozen=True)
class Headers:
    """A step's headers as its call sends them, secrets filled (`prepare_headers`), and the
    secret values filled in, kept out of its answer; or `refused`, the answer in place of a
    call when they cannot be sent."""

    # Neither in a log line or a traceback's locals repr: both hold the values.
    sent: dict[str, str] = field(repr=False)
    secrets: dict[str, str] = field(repr=False)
    refused: _Answer | None = None


def prepare_headers(step: HttpCall) -> Headers:
    """The headers of one call of `step`, filled before its host slot is taken or looked at
    again (`live_slot`): opening a secret waits on KMS (up to its timeout per secret), and
    time spent after would come out of the slot's lease, which could then run out before
    the call even starts, leaving the slot to another caller."""
    if not step.headers:
        return Headers({}, {})
    try:
        filled = vault_store.fill(step.headers)
    except vault_store.Unavailable as gone:
        # A secret that does not open now is a dependency that is down (KMS, most
        # often): retried like a 5xx. Which secret and why (key ids, KMS's codes) is the
        # operator's to read, never the customer's; the message names no value.
        applog.log_fields(
            log, logging.WARNING, "step secret not available", secret=gone.name, reason=str(gone)
        )
        return Headers({}, {}, _Answer(retryable=True, message=CREDENTIAL_UNAVAILABLE))
    for header, value in filled.headers.items():
        # A stored secret may hold what no header can (a PEM key's newlines, text
        # beyond Latin-1): the same answer every time, named by header, never by value.
        if not sendable_header_value(value):
            written = step.headers.get(header, "")
            what = "its secret's value" if referenced([written]) else "its value"
            refused = _Answer(message=f"the header {header} cannot carry {what}")
            return Headers({}, {}, refused)
    return Headers(filled.headers, filled.secrets)


def _post(
    step: HttpCall, payload: dict[str, Any], key: str, timeout_s: float, ready: Headers
) -> _Answer:
    from app.outbound.client import (  # cold start: only a worker calls out
        CallFailed,
        DestinationRefused,
        call,
    )

    if ready.refused is not None:
        return ready.refused
    headers = {**ready.sent, "Idempotency-Key": key}
    sent_secrets = ready.secrets
    try:
        reply = call(
            "POST",
            step.url,
            json_body=payload,
            headers=headers,
            timeout_s=timeout_s,
            public_only=get_settings().is_production,
            max_bytes=ANSWER_MAX_BYTES,
        )
    except ValueError:  # NaN or infinity in the input: no upstream could read it
        return _Answer(message="the step's input cannot be sent as JSON")
    except DestinationRefused as refused:  # the same answer until its DNS changes
        return _Answer(message=f"the upstream {refused}")
    except CallFailed as failed:
        return _Answer(retryable=True, message=f"the upstream {failed}")
    status = reply.status
    if reply.ok:
        if reply.cut:  # never read whole: a failed attempt, as any answer not stored
            return _Answer(
                retryable=True,
                message=f"the upstream answered {status}: more than {ANSWER_MAX_BYTES} bytes",
            )
        try:
            output = json_values.decode(reply.body, max_bytes=json_values.STEP_OUTPUT_MAX_BYTES)
            output = _without_secrets(output, sent_secrets)
        except json_values.Refused as refused:
            # Nothing that could not be stored becomes an output; the upstream may answer
            # better next time, so it is a failed attempt like a 5xx.
            return _Answer(retryable=True, message=f"the upstream answered {status}: {refused}")
        return _Answer(output=output, ok=True)
    message = f"the upstream answered {status}"
    # 408: the upstream's own timeout ended the call, which is retried as ours would be.
    if status in (408, 429) or status >= 500:
        wait = retry_after_s(reply.header("Retry-After")) if status in (429, 503) else None
        return _Answer(retryable=True, retry_after=wait, message=message)
    return _Answer(message=message)


# What a secret the step sent becomes wherever its answer holds it.
SECRET_SHOWN = "[secret]"  # noqa: S105 - the placeholder, not a secret


def _without_secrets(output: Any, sent: dict[str, str]) -> Any:
    """`output` with every secret value the call sent replaced by SECRET_SHOWN, in its
    strings and its objects' keys: an upstream that echoes what it was sent would otherwise
    put the secret into the step's row, the task's view and the next call's `previous`.
    Logged by name when it happens, never by value. `Refused` when the blanks make it
    longer than a step's output may be."""
    if not sent:
        return output
    found: set[str] = set()

    def clean(text: str) -> str:
        for name, value in sent.items():
            if value in text:
                found.add(name)
                text = text.replace(value, SECRET_SHOWN)
        return text

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return clean(item)
        if isinstance(item, dict):
            return {clean(k): walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    cleaned = walk(output)
    if not found:
        return output
    for name in sorted(found):
        applog.log_fields(
            log, logging.WARNING, "upstream answer held a secret it was sent", secret=name
        )
    # A short secret blanked many times makes the answer longer than it came.
    if len(json_values.encode(cleaned)) > json_values.STEP_OUTPUT_MAX_BYTES:
        raise json_values.Refused("too large with its secrets blanked")
    return cleaned


def slot_lease_s(step: HttpCall) -> float:
    """How long a slot of the step's host is leased for one call."""
    return step.timeout_s + SLOT_LEASE_MARGIN_S


def take_slot(step: HttpCall) -> str | None:
    """A slot of the step's upstream host for one call, or None when all are taken."""
    cap = get_settings().pipeline_host_concurrency
    return slots.acquire(step.host_key, cap, slot_lease_s(step))


def fresh_slot(step: HttpCall) -> tuple[str | None, float]:
    """A slot for one call of `step` (None when the host has none free), and when its lease
    ends at the earliest, as `lease_ends`: a time.monotonic() value. Redis sets and judges
    the lease by its own clock; the holder knows only how long it has, so it counts that
    down on a clock no NTP step moves, not on its wall clock (stepped back, a lease that
    ran out would look held still, and be called with after another caller took it)."""
    lease_ends = time.monotonic() + slot_lease_s(step)  # read before the lease is set
    return take_slot(step), lease_ends


def still_held(step: HttpCall, token: str, lease_ends: float) -> tuple[str | None, float]:
    """A held slot for one more call of `step`, and when its lease ends at the earliest
    (`lease_ends`, time.monotonic(), as `fresh_slot`'s; 0.0 when not known): as it is while
    its lease has lost less than SLOT_REUSE_S (so a call still starts with at least its
    timeout plus SLOT_LEASE_MARGIN_S - SLOT_REUSE_S of lease ahead), else renewed;
    (None, 0.0) when the renewal finds it gone (its lease ran out and another caller
    dropped it)."""
    lease_s = slot_lease_s(step)
    now = time.monotonic()  # read before the renewal: its lease ends no sooner than this
    if lease_ends - now >= lease_s - SLOT_REUSE_S:
        return token, lease_ends
    if renew_slot(step, token):
        return token, now + lease_s
    return None, 0.0


def live_slot(step: HttpCall, token: str, lease_ends: float) -> tuple[str | None, float]:
    """The slot to call with, once whatever came after it was taken (a commit, which may
    stall: a lock wait, a slow flush, a failover) may have outlasted its lease, and a slot
    whose lease ran out is anyone's to take: calling with it could put one call more on the
    host than PIPELINE_HOST_CONCURRENCY. So `token` only while still held (`still_held`),
    else a fresh slot; None when the host has none free."""
    token_held, lease_ends = still_held(step, token, lease_ends)
    if token_held is not None:
        return token_held, lease_ends
    return fresh_slot(step)


def renew_slot(step: HttpCall, token: str) -> bool:
    """A slot kept from the last call (see `run_http`'s `keep`), leased again for one
    more call of `step`; False when it is gone."""
    return slots.renew(step.host_key, token, slot_lease_s(step))


def release_slot(step: HttpCall | SimCall, token: str | None) -> None:
    """Give back the host slot taken for a call that will not be made."""
    if token is not None and isinstance(step, HttpCall):
        slots.release(step.host_key, token)


def slot_retry_delay() -> float:
    return SLOT_RETRY_S * (1 + random.random())  # jitter spreads the retries


def budget_ends_at() -> float:
    """When an invocation that starts calling out now must have ended its calls
    (time.monotonic()): INVOCATION_BUDGET_S from now, or sooner when the platform ends the
    invocation sooner than AFTER_LAST_CALL_S after that (`app.clock.run_budget_s`), so that
    what follows the last call ends inside the invocation rather than being cut."""
    return time.monotonic() + run_budget_s(INVOCATION_BUDGET_S, AFTER_LAST_CALL_S)


@dataclass(frozen=True)
class HeldSlot:
    """A host slot kept from a call that ended (see `run_http`'s `keep`), for the next call
    of the same invocation; `lease_ends`, when its lease ends at the earliest
    (time.monotonic(), see `fresh_slot`; 0 when not known)."""

    host_key: str
    token: str
    lease_ends: float = 0.0

    def release(self) -> None:
        slots.release(self.host_key, self.token)


def run_http(
    step: HttpCall,
    payload: dict[str, Any],
    key: str,
    attempts_done: int,
    record_attempt: RecordAttempt,
    first_slot: str | None = None,
    ends_at: float | None = None,
    keep: list[str] | None = None,
    headers: Headers | None = None,
) -> Outcome:
    """`first_slot`: the runner already holds a slot and counted the first call with its
    claim (one transaction fewer per call in the common case). `ends_at`: when the
    invocation's budget runs out (time.monotonic()), `budget_ends_at()` unless the caller
    knows better (an invocation that ran other branches before this one).
    `keep`: the slot of the last call, when the step ends with an answer, goes there
    instead of back to the host, for the caller's next call (which renews or frees it).
    `headers`: the first call's, filled by the caller before it looked at `first_slot`
    again; each further call's are filled before its slot is taken (`prepare_headers`)."""
    limit = 1 + step.retries
    if ends_at is None:
        ends_at = budget_ends_at()
    token = first_slot
    ready = headers
    while True:
        try:
            if token is None:
                if attempts_done >= limit:  # the last caller died before settling the step
                    return Failed(step_failed(f"no answer after {attempts_done} calls"))
                # Filled before the slot is taken: KMS's time is not the lease's.
                ready = ready or prepare_headers(step)
                token, lease_ends = fresh_slot(step)
                if token is None:
                    return Requeue(slot_retry_delay())
                if not record_attempt():
                    return Abandoned()
                attempts_done += 1
                # The count's commit may have stalled past the slot's lease: checked again.
                try:
                    token, lease_ends = live_slot(step, token, lease_ends)
                except Exception as error:
                    if not is_redis_error(error):
                        raise
                    # Not made, as with a slot lost, and its count taken back with the
                    # park (`Requeue.unmade`): raised, the row would go back with the call
                    # counted, and a step could use up its calls without its upstream ever
                    # being called. `token` goes back in `finally`.
                    slots.log_unavailable("host slot not checked", step.host_key, error)
                    return Requeue(slot_retry_delay(), unmade=True)
                if token is None:
                    return Requeue(slot_retry_delay(), unmade=True)
            ready = ready or prepare_headers(step)  # a slot handed over without them
            # Never past the invocation's budget, the first call included: what is left
            # of it bounds the call's timeout.
            left = ends_at - time.monotonic()
            answer = _post(step, payload, key, max(min(step.timeout_s, left), 0.1), ready)
            ready = None  # the next call fills its own: a secret may change meanwhile
            outcome = "ok" if answer.ok else "retryable" if answer.retryable else "failed"
            PIPELINE_CALLS.labels(outcome).inc()
            ended = outcome != "retryable" or attempts_done >= limit
            if keep is not None and token is not None and ended:
                keep.append(token)
                token = None
        finally:
            if token is not None:
                slots.release(step.host_key, token)
                token = None
        if answer.ok:
            return Succeeded(answer.output)
        if not answer.retryable or attempts_done >= limit:
            tries = "once" if attempts_done == 1 else f"{attempts_done} times"
            return Failed(step_failed(f"{answer.message} (called {tries})"))
        if answer.retry_after is not None:
            delay = answer.retry_after
        else:
            delay = BACKOFF_BASE_S * 2 ** (attempts_done - 1)
        if delay > INLINE_WAIT_MAX_S or time.monotonic() + delay + step.timeout_s > ends_at:
            return Requeue(delay)
        time.sleep(delay)


def run_sim(step: SimCall, payload: dict[str, Any]) -> Outcome:
    """The runner counted the attempt with its claim."""
    time.sleep(step.duration_ms / 1000)
    if step.fail:
        return Failed(step_failed("the simulated step failed as configured"))
    return Succeeded(
        {
            "simulated": True,
            "step_id": payload["step_id"],
            "branch": payload["branch"],
            "input": payload["input"],
        }
    )
