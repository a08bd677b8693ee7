"""The local cloud's custom domain and Function URLs over real HTTP: the path mapping
derived from the route table, the Function URL event it builds, the answer it turns back
into HTTP, and keep-alive connections without Nagle's delay."""

from __future__ import annotations

import base64
import http.client
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests


def _echo(cloud: Any, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, Any]:
    reply = requests.request(method, cloud.url + path, timeout=10, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply, reply.json()


def test_the_event_is_a_function_urls(cloud: Any) -> None:
    _, answer = _echo(cloud, "GET", "/_test/echo/abc?tag=a&tag=b&empty=&name=%E4%BD%A0%E5%A5%BD")
    event = answer["event"]
    assert set(event) == {"httpMethod", "path", "headers", "queryString", "body"}
    assert event["queryString"] == {"tag": ["a", "b"], "empty": "", "name": "你好"}
    assert event["path"] == "/_test/echo/abc"
    assert event["httpMethod"] == "GET"
    assert event["body"] == ""
    assert all(name == name.lower() for name in event["headers"])


def test_the_client_address_is_the_peers_never_a_forwarded_header(cloud: Any) -> None:
    _, answer = _echo(
        cloud,
        "GET",
        "/_test/echo/x",
        headers={"X-Forwarded-For": "198.51.100.7", "X-Scf-Remote-Addr": "198.51.100.8"},
    )
    assert answer["event"]["headers"]["x-scf-remote-addr"] == "127.0.0.1"


def test_utf8_bodies_are_text_and_other_bodies_base64(cloud: Any) -> None:
    _, answer = _echo(cloud, "POST", "/_test/echo/x", data='{"a": "é"}'.encode())
    assert answer["event"]["body"] == '{"a": "é"}'
    assert "isBase64Encoded" not in answer["event"]
    raw = bytes(range(256))
    _, answer = _echo(cloud, "PUT", "/_test/echo/x", data=raw)
    assert answer["event"]["isBase64Encoded"] is True
    assert base64.b64decode(answer["event"]["body"]) == raw


def test_headers_and_the_context(cloud: Any) -> None:
    reply, answer = _echo(cloud, "GET", "/_test/echo/x", headers={"X-Custom": "Yes"})
    event, context = answer["event"], answer["context"]
    assert event["headers"]["x-custom"] == "Yes"
    assert context["function_name"] == "gateway-probe"
    assert context["request_id"]
    _, again = _echo(cloud, "GET", "/_test/echo/x")
    assert again["context"]["request_id"] != context["request_id"]
    # A header the function gives as a list is sent once per value.
    assert reply.headers["X-Probe"] == "a, b"


def test_a_base64_answer_is_decoded(cloud: Any) -> None:
    reply = requests.get(cloud.url + "/_test/binary", timeout=10)
    assert reply.status_code == 200
    assert reply.content == bytes(range(256))
    assert reply.headers["Content-Type"] == "application/octet-stream"


def test_unknown_paths_wrong_methods_and_shared_functions_answer_as_the_api_says(
    cloud: Any,
) -> None:
    for method, path, status, code in (
        ("GET", "/no/such/path", 404, "NOT_FOUND"),  # the catch-all function
        ("GET", "/tasks/abc/cancel/more", 404, "NOT_FOUND"),  # tasks-id: no such route
        ("DELETE", "/health", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/tasks", 405, "METHOD_NOT_ALLOWED"),  # GET and POST share the function
    ):
        reply = requests.request(method, cloud.url + path, timeout=10)
        assert reply.status_code == status, (method, path, reply.text)
        body = reply.json()
        assert body["code"] == code
        assert body["request_id"] == reply.headers["X-Request-Id"]
    assert requests.delete(cloud.url + "/tasks", timeout=10).headers["Allow"] == "GET, HEAD, POST"


def test_head_is_the_gets_answer_without_its_body(cloud: Any) -> None:
    """An uptime check's `HEAD /health`: the function's status and headers, the length of
    the body a GET gets, no body; a path whose function serves no GET is 405 to it."""
    got = requests.get(cloud.url + "/health", timeout=10)
    head = requests.head(cloud.url + "/health", timeout=10)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(got.content))
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.headers["X-Request-Id"]
    refused = requests.head(cloud.url + "/auth/login", timeout=10)
    assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
    assert refused.content == b"" and int(refused.headers["Content-Length"]) > 0


def test_a_crashing_function_is_the_platforms_502_without_internals(cloud: Any) -> None:
    for path in ("/_test/crash", "/_test/not-a-payload"):
        reply = requests.get(cloud.url + path, timeout=10)
        assert reply.status_code == 502
        assert "on purpose" not in reply.text
        assert reply.headers["X-Request-Id"]


def test_real_functions_answer_through_the_domain(cloud: Any) -> None:
    reply = requests.get(cloud.url + "/health", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}
    assert reply.headers["X-Request-Id"]


def test_many_requests_run_at_once(cloud: Any) -> None:
    def one(i: int) -> int:
        return requests.get(f"{cloud.url}/_test/echo/n{i}", timeout=30).status_code

    with ThreadPoolExecutor(50) as pool:
        assert set(pool.map(one, range(100))) == {200}


def test_keep_alive_connections_send_without_nagles_delay(cloud: Any) -> None:
    """The server's side of every accepted connection has TCP_NODELAY set (asyncio sets it
    only for a listening socket created as IPPROTO_TCP): checked on the connection itself,
    not by timing it."""
    connection = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=10)
    try:
        for _ in range(3):  # one connection, reused
            connection.request("GET", "/_test/echo/keep")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
        peers = cloud.server_sockets()
        local = connection.sock.getsockname()
        accepted = [s for s in peers if s.getpeername() == local]
        assert len(accepted) == 1
        assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        connection.close()
