"""An instance's start (app.startup): the settings every adapter reads first, and the JSON
line a refusal writes before it stops the instance. Every adapter reads them when the
function's module makes its handler, the WebSocket's when it makes its app
(tests/test_production_env.py starts each kind of function in a child process)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import ProductionMisconfigured, get_settings
from app.events import websocket
from app.startup import instance_settings
from tests.support.logs import capture_logs
from tests.support.settings import settings_env

REFUSED = {"APP_ENV": "production", "SCF_FUNCTIONNAME": "app-prod-ws"}


def test_the_settings_are_read_and_nothing_is_logged() -> None:
    with capture_logs() as logs:
        assert instance_settings().app_env != "production"
    assert logs.where(message="instance refused to start") == []


def test_a_refusal_is_one_error_line_naming_the_function_and_why_then_raised() -> None:
    with capture_logs() as logs, settings_env(**REFUSED), pytest.raises(ProductionMisconfigured):
        instance_settings()
    [line] = logs.where(message="instance refused to start")
    assert line["level"] == "error"
    assert line["function"] == "app-prod-ws"
    assert line["error"] == "ProductionMisconfigured"
    assert "METRICS_TOKEN is unset" in line["reason"]
    assert get_settings().jwt_secret.get_secret_value() not in logs.text  # never a value


def test_a_value_not_valid_for_its_setting_is_a_refusal_logged_without_the_value() -> None:
    # Not sealed: refused by the settings' own validation, before any secret is opened.
    refused = {**REFUSED, "APP_ENV": None, "SMS_COOLDOWN_S": "ninety-seconds"}
    with capture_logs() as logs, settings_env(**refused), pytest.raises(ValidationError):
        instance_settings()
    [line] = logs.where(message="instance refused to start")
    assert {key: line[key] for key in ("level", "function", "error", "reason")} == {
        "level": "error",
        "function": "app-prod-ws",
        "error": "ValidationError",
        "reason": "SMS_COOLDOWN_S: Input should be a valid integer, unable to parse string as an"
        " integer",
    }
    assert "ninety-seconds" not in logs.text


def test_the_websocket_app_is_made_only_from_settings_it_can_read() -> None:
    with capture_logs() as logs, settings_env(**REFUSED), pytest.raises(ProductionMisconfigured):
        websocket.websocket_app()
    [line] = logs.where(message="instance refused to start")
    assert line["function"] == "app-prod-ws"
