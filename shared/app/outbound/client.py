"""The outbound HTTP client: one call, bounded by a total deadline, nothing done behind the
caller's back.

    reply = client.call("POST", url, json_body={...}, headers={...}, timeout_s=5)
    reply.status, reply.header("Retry-After"), reply.json()

- `timeout_s` bounds the whole call, the lookup, connect and every byte of the answer included
  (`app.outbound.deadline`), not each socket read: a server trickling its answer cannot hold
  a caller past its budget.
- Nothing is retried and no redirect is followed: callers count their own attempts (the
  runner counts them in the step's row), and a redirect could lead off an allow-list.
- TLS is verified against certifi's CA bundle; no proxy or .netrc is read from the
  environment (a proxy would hide where the call goes).
- The client resolves the host itself and connects to the address it resolved (TLS still
  checks the certificate against the host name). With `public_only` (production) it refuses
  a name with any address outside the public internet (`app.outbound.addresses`) before
  connecting: `DestinationRefused`. There is no second lookup a rebinding DNS could answer.
- No answer is `CallFailed` (`timed_out`: the deadline passed; otherwise the server could not
  be reached or broke the connection). Any status is a `Reply`; the caller judges it.
- With `max_bytes` no more of the body than that is read, however much the server sends
  (decompressed size, when it compresses): the rest is left unread, the connection closed,
  and the `Reply` says it was `cut`. The deadline bounds an answer's time, this its memory.

Connections are kept alive per host and per thread (one pool manager per thread).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

from urllib3 import BaseHTTPResponse, PoolManager, Timeout
from urllib3.exceptions import HTTPError, LocationParseError, NewConnectionError
from urllib3.exceptions import TimeoutError as SocketTimeout
from urllib3.util import parse_url

from app import addresses
from app.outbound import deadline

JSON_TYPE = "application/json"


class CallFailed(Exception):
    """No answer came back. The message is safe to log: it names no URL parameter."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class DestinationRefused(CallFailed):
    """The host resolves to an address a production call may not reach; nothing was sent.
    Asking again gives the same answer until its DNS changes."""

    def __init__(self) -> None:
        super().__init__("resolves to an address that is not public", timed_out=False)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as urllib3 gives them
    body: bytes
    cut: bool = False  # the body went on past the call's `max_bytes`: `body` is its start

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


class _NoQueryStrings(logging.Filter):
    """urllib3 names the URL it asked in some lines, query string included (a warning about
    headers it cannot parse, at INFO and above): WeChat's app secret and access token travel
    there. Its lines keep the URL up to the query, and lose the stack trace urllib3 attaches
    to that warning (its own, of the parse: the message already names the defect)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] + "?[query]"
                if isinstance(arg, str) and "://" in arg and "?" in arg
                else arg
                for arg in record.args
            )
        return True


for _name in ("urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager"):
    logging.getLogger(_name).addFilter(_NoQueryStrings())

_local = threading.local()


def _pool() -> PoolManager:
    pool: PoolManager | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = deadline.pool_manager()
    return pool


def call(
    method: str,
    url: str,
    *,
    timeout_s: float,
    public_only: bool,
    json_body: Any = None,
    body: bytes | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
) -> Reply:
    """One request, answered within `timeout_s` in all, or `CallFailed`. `json_body` is
    sent compactly as JSON (NaN and infinities refused with ValueError before anything is
    sent); `params` go into the query string. `public_only`: refuse a host that resolves to
    anything but public addresses (`DestinationRefused`)."""
    sent = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body, allow_nan=False, separators=(",", ":")).encode()
        sent.setdefault("Content-Type", JSON_TYPE)
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    try:
        target = parse_url(url)
    except LocationParseError:
        raise CallFailed("has an invalid URL", timed_out=False) from None
    if target.scheme not in ("http", "https") or not target.host:
        raise CallFailed("has an invalid URL", timed_out=False)
    host = target.host.strip("[]")
    port = target.port or (443 if target.scheme == "https" else 80)
    # The request names the host, whichever address it goes to.
    sent.setdefault("Host", target.netloc or host)
    # TLS: the name for SNI and the certificate, not the address connected to.
    tls = {"server_hostname": host, "assert_hostname": host} if target.scheme == "https" else None
    with deadline.within(timeout_s) as watch:
        try:
            address = _resolve(host, port, public_only, watch)
            pool = _pool().connection_from_host(address, port, target.scheme, pool_kwargs=tls)
            response = pool.urlopen(
                method,
                target.request_uri,
                body=body,
                headers=sent,
                timeout=Timeout(connect=timeout_s, read=timeout_s),
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            # Read under the deadline too: a trickled body is what it is there for.
            reply = _reply(response, max_bytes)
        except addresses.NotPublic:
            raise DestinationRefused() from None
        except SocketTimeout as error:
            # A refused connection or an unknown host is a ConnectTimeoutError too.
            if watch.expired or not isinstance(error, NewConnectionError):
                raise CallFailed("timed out", timed_out=True) from None
            raise CallFailed("could not be reached", timed_out=False) from None
        except (HTTPError, OSError):
            if watch.expired:
                raise CallFailed("timed out", timed_out=True) from None
            raise CallFailed("could not be reached", timed_out=False) from None
    if watch.expired:  # what was read may be cut short
        raise CallFailed("timed out", timed_out=True)
    return reply


# Lookups run here, so that a call waits for one no longer than its deadline.
_lookups = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="http-lookup")
# The lookup in flight for each (host, port, public_only): calls to one name share it.
_pending: dict[tuple[str, int, bool], futures.Future[str]] = {}
_pending_lock = threading.Lock()


def _resolve(host: str, port: int, public_only: bool, watch: deadline.Watch) -> str:
    """`addresses.resolve` within what is left of the call's time. getaddrinfo cannot be
    interrupted, and a resolver that does not answer (5 s a try, per name server, by
    default) would hold the call, and the host slot it leases, past its deadline: the
    lookup is left to end on its own thread. Calls to a name share its lookup in flight,
    so a name whose resolver hangs holds one of the threads, never all of them and with
    them the calls to every other host."""
    key = (host, port, public_only)
    with _pending_lock:
        lookup = _pending.get(key)
        made = lookup is None
        if lookup is None:
            lookup = _pending[key] = _lookups.submit(
                addresses.resolve, host, port, public_only=public_only
            )
    if made:  # outside the lock: a lookup already done calls back at once, in this thread
        lookup.add_done_callback(partial(_forget, key))
    try:
        return lookup.result(timeout=max(watch.due - time.monotonic(), 0.0))
    except futures.TimeoutError:
        raise CallFailed("timed out", timed_out=True) from None


def _forget(key: tuple[str, int, bool], done: futures.Future[str]) -> None:
    """The next call to the name looks it up afresh: a resolution is never kept."""
    with _pending_lock:
        if _pending.get(key) is done:
            del _pending[key]


_CHUNK = 64 * 1024


def _reply(response: BaseHTTPResponse, max_bytes: int | None) -> Reply:
    """The answer with its body whole, or with its first `max_bytes` when it went on."""
    status, headers = response.status, response.headers
    if max_bytes is None:  # read whole, and the connection goes back to its pool
        return Reply(status, headers, response.data)
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = response.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            response.release_conn()
            return Reply(status, headers, b"".join(chunks))
        chunks.append(chunk)
        size += len(chunk)
    # The rest is never read: the connection cannot be used again with it in the way.
    response.close()
    response.release_conn()
    return Reply(status, headers, b"".join(chunks)[:max_bytes], cut=True)
