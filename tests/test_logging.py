"""One JSON log line per invocation: function, route, status, duration_ms, request_id, and
user_id when the caller signed in."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router, http_handler
from app.observability import logging as applog
from tests.support.function_url import context, event
from tests.support.functions import ROOT
from tests.support.logs import capture_logs
from tests.support.pipelines import token_for
from tests.support.quota import new_user

router = Router(tags=("test",))


@router.get("/me/things", auth=Auth.USER)
def my_things(req: Request[None, None]) -> dict[str, Any]:
    req.extra_log["things"] = 3
    return {"user": req.user.user_id}


@router.get("/things/{thing_id}", auth=Auth.PUBLIC)
def get_thing(req: Request[None, None]) -> dict[str, Any]:
    if req.path_params["thing_id"] == "missing":
        raise AppError(ErrorCode.NOT_FOUND)
    return {}


@router.get("/me/noted", auth=Auth.USER)
def noted(req: Request[None, None]) -> dict[str, Any]:
    # What a service deep below the route writes, knowing nothing of the invocation.
    applog.log_fields(applog.get_logger("app.somewhere"), logging.WARNING, "noted", thing=1)
    return {}


handler = http_handler(my_things, get_thing, noted)
FIELDS = {"function", "route", "status", "duration_ms", "request_id"}


def invoke(
    evt: dict[str, Any], function: str = "things-get", request_id: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with capture_logs() as logs:
        result = handler(evt, context(function, request_id))
    return result, logs.where(message="invocation")


def test_one_line_with_the_invocation_fields() -> None:
    evt = event("GET", "/things/t1")
    result, lines = invoke(evt, request_id="req-1")
    assert len(lines) == 1
    line = lines[0]
    assert set(line) >= FIELDS
    assert line["function"] == "things-get"
    assert line["route"] == "/things/{thing_id}"  # the template, not the concrete path
    assert line["status"] == 200 == result["statusCode"]
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["request_id"] == "req-1"
    assert line["request_id"] == result["headers"]["X-Request-Id"]
    assert line["level"] == "info"
    assert "user_id" not in line


def test_signed_in_caller_is_logged_by_user_id_and_never_by_token() -> None:
    user_id = new_user()
    token = token_for(user_id)
    result, lines = invoke(event("GET", "/me/things", token=token), function="me-things")
    assert result["statusCode"] == 200
    assert len(lines) == 1
    assert lines[0]["user_id"] == user_id
    assert lines[0]["things"] == 3  # what the handler added to the line
    assert token not in json.dumps(lines[0])


def test_errors_are_logged_with_their_status() -> None:
    _, lines = invoke(event("GET", "/things/missing"))
    assert [(line["status"], line["route"]) for line in lines] == [(404, "/things/{thing_id}")]

    _, lines = invoke(event("GET", "/me/things", token="forged"))
    assert [(line["status"], "user_id" in line) for line in lines] == [(401, False)]

    _, lines = invoke(event("GET", "/nowhere"))
    assert [(line["status"], line["route"]) for line in lines] == [(404, "unmatched")]


def test_the_line_names_the_client_address_and_an_errors_code() -> None:
    _, lines = invoke(event("GET", "/things/t1", source_ip="198.51.100.23"))
    assert lines[0]["client_ip"] == "198.51.100.23" and "error" not in lines[0]

    _, lines = invoke(event("GET", "/things/missing", source_ip="198.51.100.24"))
    assert (lines[0]["client_ip"], lines[0]["error"]) == ("198.51.100.24", "NOT_FOUND")

    _, lines = invoke(event("GET", "/me/things", token="forged"))
    assert lines[0]["error"] == "AUTH_TOKEN_INVALID"

    # Refused before the request is parsed: the body is over the limit, or not valid text.
    too_big = "x" * (get_settings().max_body_bytes + 1)
    big = event("POST", "/things/t1", source_ip="198.51.100.25", raw_body=too_big)
    _, lines = invoke(big)
    assert (lines[0]["status"], lines[0]["error"]) == (413, "PAYLOAD_TOO_LARGE")
    assert lines[0]["client_ip"] == "198.51.100.25"
    broken = event("GET", "/things/t1", source_ip="198.51.100.26")
    broken["path"] = "/things/\udc80"
    _, lines = invoke(broken)
    assert (lines[0]["error"], lines[0]["client_ip"]) == ("VALIDATION_ERROR", "198.51.100.26")

    # Only the platform's header: one the client sends names nothing.
    spoofed = event("GET", "/things/t1", source_ip="", headers={"X-Forwarded-For": "10.0.0.1"})
    _, lines = invoke(spoofed)
    assert lines[0]["client_ip"] == ""


def test_a_line_written_during_an_invocation_names_its_request_function_and_user() -> None:
    user_id = new_user()
    with capture_logs() as logs:
        handler(event("GET", "/me/noted", token=token_for(user_id)), context("noted", "req-9"))
    (line,) = logs.where(message="noted")
    assert (line["request_id"], line["function"], line["user_id"]) == ("req-9", "noted", user_id)
    assert line["thing"] == 1 and line["level"] == "warning"
    # Only while the invocation runs: a line written after it names none of them.
    with capture_logs() as logs:
        applog.log_fields(applog.get_logger("app.somewhere"), logging.WARNING, "later")
    (line,) = logs.where(message="later")
    assert not {"request_id", "function", "user_id"} & set(line)


def test_stdout_gets_exactly_one_json_line_per_invocation() -> None:
    # A fresh interpreter, as an SCF instance: everything it prints must be JSON lines.
    script = textwrap.dedent(
        """
        import importlib.util, json, sys
        from tests.support.function_url import context, event
        spec = importlib.util.spec_from_file_location("index", "functions/openapi/index.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for _ in range(3):
            module.main_handler(event("GET", "/openapi.json"), context("openapi"))
        module.main_handler(event("GET", "/elsewhere"), context("openapi"))
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["message"], line["status"]) for line in lines] == [
        ("invocation", 200),
        ("invocation", 200),
        ("invocation", 200),
        ("invocation", 404),
    ]
    assert all(line["function"] == "openapi" and set(line) >= FIELDS for line in lines)
    assert len({line["request_id"] for line in lines}) == 4
