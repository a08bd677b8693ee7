"""The local API Gateway over real HTTP: the event it builds, the integration response it
turns back into HTTP, and its own 404 / 405 answers."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests


def _echo(cloud: Any, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, Any]:
    reply = requests.request(method, cloud.url + path, timeout=10, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply, reply.json()


def test_the_event_carries_the_full_query_with_repeated_keys_as_lists(cloud: Any) -> None:
    _, answer = _echo(cloud, "GET", "/_test/echo/abc?tag=a&tag=b&empty=&name=%E4%BD%A0%E5%A5%BD")
    event = answer["event"]
    assert event["queryString"] == {"tag": ["a", "b"], "empty": "", "name": "你好"}
    assert event["queryStringParameters"] == {}
    assert event["pathParameters"] == {"name": "abc"}
    assert event["path"] == "/_test/echo/abc"
    assert event["httpMethod"] == "GET"
    assert event["requestContext"]["path"] == "/_test/echo/{name}"
    assert event["requestContext"]["sourceIp"] == "127.0.0.1"
    assert "body" not in event


def test_static_routes_win_over_templates(cloud: Any) -> None:
    _, answer = _echo(cloud, "GET", "/_test/echo/static")
    assert answer["event"]["pathParameters"] == {}
    assert answer["event"]["requestContext"]["path"] == "/_test/echo/static"


def test_utf8_bodies_are_text_and_other_bodies_base64(cloud: Any) -> None:
    _, answer = _echo(cloud, "POST", "/_test/echo/x", data='{"a": "é"}'.encode())
    assert answer["event"]["body"] == '{"a": "é"}'
    assert answer["event"]["isBase64Encoded"] is False
    raw = bytes(range(256))
    _, answer = _echo(cloud, "PUT", "/_test/echo/x", data=raw)
    assert answer["event"]["isBase64Encoded"] is True
    assert base64.b64decode(answer["event"]["body"]) == raw


def test_headers_request_id_and_context(cloud: Any) -> None:
    reply, answer = _echo(cloud, "GET", "/_test/echo/x", headers={"X-Custom": "Yes"})
    event, context = answer["event"], answer["context"]
    assert event["headers"]["x-custom"] == "Yes"
    request_id = event["requestContext"]["requestId"]
    assert reply.headers["X-Request-Id"] == request_id
    assert context["request_id"] == request_id
    assert context["function_name"] == "gateway-probe"
    _, again = _echo(cloud, "GET", "/_test/echo/x")
    assert again["event"]["requestContext"]["requestId"] != request_id
    # A header the function gives as a list is sent once per value.
    assert reply.headers["X-Probe"] == "a, b"


def test_a_base64_integration_response_is_decoded(cloud: Any) -> None:
    reply = requests.get(cloud.url + "/_test/binary", timeout=10)
    assert reply.status_code == 200
    assert reply.content == bytes(range(256))
    assert reply.headers["Content-Type"] == "application/octet-stream"


def test_unknown_path_is_404_and_wrong_method_405_in_the_envelope(cloud: Any) -> None:
    for method, path, status, code in (
        ("GET", "/no/such/path", 404, "NOT_FOUND"),
        ("DELETE", "/health", 405, "METHOD_NOT_ALLOWED"),
    ):
        reply = requests.request(method, cloud.url + path, timeout=10)
        assert reply.status_code == status
        body = reply.json()
        assert body["code"] == code
        assert body["request_id"] == reply.headers["X-Request-Id"]


def test_a_crashing_function_is_a_500_without_internals(cloud: Any) -> None:
    for path in ("/_test/crash", "/_test/not-integration"):
        reply = requests.get(cloud.url + path, timeout=10)
        assert reply.status_code == 500
        assert reply.json()["code"] == "INTERNAL_ERROR"
        assert "on purpose" not in reply.text
        assert reply.json()["request_id"] == reply.headers["X-Request-Id"]


def test_real_functions_answer_through_the_gateway(cloud: Any) -> None:
    reply = requests.get(cloud.url + "/health", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}
    assert reply.headers["X-Request-Id"]


def test_many_requests_run_at_once(cloud: Any) -> None:
    def one(i: int) -> int:
        return requests.get(f"{cloud.url}/_test/echo/n{i}", timeout=30).status_code

    with ThreadPoolExecutor(50) as pool:
        assert set(pool.map(one, range(100))) == {200}
