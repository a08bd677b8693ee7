"""GET /metrics shows business counters and the pool's state: with METRICS_TOKEN set it
answers only its bearer; without, it is open (a laptop), which production refuses to start
with (tests/test_config.py)."""

from __future__ import annotations

import secrets

import pytest

from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.settings import settings_env

TOKEN = secrets.token_hex(32)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "AUTH_REQUIRED"),
        ({"Authorization": "Bearer wrong"}, "AUTH_TOKEN_INVALID"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "AUTH_TOKEN_INVALID"),
        ({"Authorization": f"Basic {TOKEN}"}, "AUTH_TOKEN_INVALID"),
    ],
    ids=["no token", "wrong token", "token cut short", "other scheme"],
)
def test_without_the_token_metrics_are_401_and_show_nothing(
    headers: dict[str, str], code: str
) -> None:
    with settings_env(METRICS_TOKEN=TOKEN):
        reply = call(handler("metrics"), "GET", "/metrics", headers=headers)
    assert reply.status == 401
    assert reply.json()["code"] == code
    assert "http_requests_total" not in reply.body and TOKEN not in reply.body


def test_the_bearer_of_the_token_reads_the_metrics() -> None:
    with settings_env(METRICS_TOKEN=TOKEN):
        reply = call(
            handler("metrics"),
            "GET",
            "/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert reply.status == 200
    assert reply.header("Content-Type").startswith("text/plain")
    assert "# TYPE" in reply.body


def test_unset_the_metrics_are_open() -> None:
    with settings_env(METRICS_TOKEN=None):
        assert call(handler("metrics"), "GET", "/metrics").status == 200
