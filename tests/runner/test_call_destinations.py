"""In production a step's call goes only to public addresses: an allowed name whose DNS
points at the metadata service fails the step at once, without a call and without retries
(the answer stays the same until the DNS changes)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from app.pipeline.definition import HttpCall
from app.runner import calls
from tests.support.settings import settings_env
from tests.test_config import PRODUCTION_ENV


def test_a_step_whose_host_resolves_to_the_metadata_service_fails_uncalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "ai.example.com":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    production = {
        **PRODUCTION_ENV,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
    }
    with settings_env(**production):
        step = HttpCall.model_validate(
            {"type": "http", "url": "https://ai.example.com/v1/render", "retries": 2}
        )
        recorded: list[int] = []
        outcome = calls.run_http(step, {}, "t:a:-", 0, lambda: recorded.append(1) or True)

    assert isinstance(outcome, calls.Failed), outcome
    assert "resolves to an address that is not public (called once)" in str(outcome)
    assert lookups == ["ai.example.com"] and len(recorded) == 1
