"""The outbound client: one request, answered or `CallFailed`, nothing done behind the
caller's back (no redirect followed, nothing retried), a total deadline, JSON that an
upstream could read."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

from app.outbound.client import CallFailed, call
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.logs import capture_logs
from tests.support.net import closed_port


def test_an_answer_comes_back_whatever_its_status_with_headers_and_body() -> None:
    with FakeUpstream() as up:
        up.script("/busy", lambda _c: Answer(429, {"busy": True}, headers={"Retry-After": "3"}))
        reply = call("POST", up.url("/busy"), json_body={"n": 1}, timeout_s=5, public_only=False)
        sent = up.calls_to("/busy")[0]
    assert (reply.status, reply.ok) == (429, False)
    assert reply.header("retry-after") == "3"  # header names ignore case
    assert reply.json() == {"busy": True}
    assert sent.body == {"n": 1} and sent.headers["content-type"] == "application/json"


def test_query_parameters_are_encoded_into_the_url() -> None:
    with FakeUpstream() as up:
        call(
            "POST",
            up.url("/q"),
            params={"a": "1 2", "b": "&"},
            body=b"{}",
            timeout_s=5,
            public_only=False,
        )
        assert [c.path for c in up.calls] == ["/q?a=1+2&b=%26"]


def test_a_redirect_is_answered_not_followed() -> None:
    with FakeUpstream() as up:
        up.script("/moved", lambda _c: Answer(302, {}, headers={"Location": up.url("/other")}))
        reply = call("POST", up.url("/moved"), json_body={}, timeout_s=5, public_only=False)
        assert reply.status == 302
        assert up.calls_to("/other") == []


def test_no_answer_in_time_is_a_timeout_and_a_closed_port_is_unreachable() -> None:
    with FakeUpstream() as up:
        up.script("/slow", lambda _c: Answer(200, {}, delay_s=2))
        started = time.monotonic()
        with pytest.raises(CallFailed) as slow:
            call("POST", up.url("/slow"), json_body={}, timeout_s=0.3, public_only=False)
        assert time.monotonic() - started < 1.9  # unbounded, the answer would take 2 s
    assert slow.value.timed_out
    with pytest.raises(CallFailed) as refused:
        call(
            "POST",
            f"http://127.0.0.1:{closed_port()}/",
            json_body={},
            timeout_s=2,
            public_only=False,
        )
    assert not refused.value.timed_out and str(refused.value) == "could not be reached"


def test_nan_is_refused_before_anything_is_sent() -> None:
    with FakeUpstream() as up:
        with pytest.raises(ValueError):
            call(
                "POST", up.url("/x"), json_body={"score": math.nan}, timeout_s=5, public_only=False
            )
        assert up.calls == []


def _raw_server(answer: bytes) -> tuple[socket.socket, int]:
    """A server that answers every connection with `answer`, whatever was asked."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_an_answer_with_broken_headers_logs_no_query_string() -> None:
    # urllib3 warns about headers it cannot parse, naming the URL asked: WeChat's secret
    # and access token travel in the query string.
    server, port = _raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nno colon\r\n\r\n{}")
    with server, capture_logs() as logs:
        reply = call(
            "GET",
            f"http://127.0.0.1:{port}/sns/jscode2session",
            params={"secret": "s3cr3t-in-the-query"},
            timeout_s=5,
            public_only=False,
        )
    assert reply.status == 200
    assert "Failed to parse headers" in logs.text  # the warning itself is kept
    assert "s3cr3t-in-the-query" not in logs.text
    assert "Traceback" not in logs.text  # urllib3's own, of the parse
