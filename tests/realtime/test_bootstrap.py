"""The `ws` function as SCF starts it: `scf_bootstrap`'s own command (the runtime's Python
path replaced by this interpreter's, port 9000 by a free one) in a fresh process, from the
function's folder with only it and the layer on the path. The server it starts refuses a bad
token with 401 and serves a live one."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from app import cache, profiles
from app.events.uvicorn_log import UNCOMPLETED
from app.events.websocket import CLIENT_MESSAGE_MAX_BYTES
from tests.support.functions import FUNCTIONS, ROOT
from tests.support.net import closed_port
from tests.support.pipelines import token_for
from tests.support.quota import new_user
from tests.support.settings import settings_env
from tests.support.websocket_raw import connect_unread, flood_pings, rss_bytes

FOLDER = FUNCTIONS / "ws"
# The ws app behind handshakes it never makes (a bug's): one unanswered, one raising.
PROBE = ROOT / "tests" / "functions" / "ws-probe"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int) -> list[str]:
    text = (FOLDER / "scf_bootstrap").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("exec ")]
    words = shlex.split(line)[1:]
    assert words[0] == "/var/lang/python310/bin/python3"
    command = " ".join([sys.executable, *words[1:]])
    return shlex.split(re.sub(r"--port 9000\b", f"--port {port}", command))


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        """Everything the server wrote, once it has been stopped."""
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        return out.decode()

    def refused(self, path: str, token: str) -> int:
        """The status a handshake at `path` with `token` is refused with."""
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{self.port}{path}?token={token}", open_timeout=10)
        return refused.value.response.status_code


def errors_in(output: str) -> list[str]:
    """The lines logged at ERROR: uvicorn's own (its default format, `ERROR:    ...`) and
    the app's JSON lines."""
    found = [line for line in output.splitlines() if line.startswith("ERROR:")]
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line)["level"] == "error":
            found.append(line)
    return found


def app_lines(output: str, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == message]


def _environment(folder: Path, **env_overrides: str) -> dict[str, str]:
    """The tests' own settings, and only the function's folder and the layer on the path."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update({k: os.environ[k] for k in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "JWT_SECRET")})
    env.update(env_overrides, PYTHONPATH=f"{folder}{os.pathsep}{ROOT / 'shared'}")
    return env


@contextmanager
def _serving(folder: Path, **env_overrides: str) -> Iterator[Served]:
    """scf_bootstrap's server, run from `folder` (the function's, or a probe's)."""
    port = _free_port()
    env = _environment(folder, **env_overrides)
    server = subprocess.Popen(
        _command(port), cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, server.stdout
            time.sleep(0.05)
        yield Served(port, server)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


@pytest.fixture
def served(redis_db: Any) -> Iterator[Served]:
    with _serving(FOLDER) as server:
        yield server


def test_scf_bootstrap_serves_the_app_on_its_port(served: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{served.port}/?token=bad", open_timeout=10)
    assert refused.value.response.status_code == 401
    token = token_for(new_user())
    with connect(f"ws://127.0.0.1:{served.port}/?token={token}", open_timeout=10) as socket_:
        socket_.send(json.dumps({"type": "ping"}))
        assert json.loads(socket_.recv(timeout=10)) == {"type": "pong"}


def test_an_instance_whose_settings_are_refused_exits_before_it_serves() -> None:
    """uvicorn's import of `index:app` reads the settings: a refused instance writes its one
    line and its process exits, so SCF sees its start fail (rather than an instance that
    answers every handshake with an error). Were it serving, the wait would end it."""
    port = _free_port()
    env = _environment(FOLDER, APP_ENV="production", SCF_FUNCTIONNAME="ai-platform-prod-ws")
    server = subprocess.Popen(
        _command(port), cwd=FOLDER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        out, err = server.communicate(timeout=10)
        pytest.fail(f"a refused instance kept serving: {out!r} {err!r}")
    assert server.returncode != 0, (out, err)
    [line] = app_lines(out.decode(), "instance refused to start")
    assert line["function"] == "ai-platform-prod-ws" and line["error"] == "ProductionMisconfigured"


def assert_upgrade_required(reply: requests.Response) -> None:
    """A request that is not a WebSocket handshake: 422 VALIDATION_ERROR naming the upgrade,
    in the API's error shape with the request id of its X-Request-Id."""
    assert reply.status_code == 422, reply.text
    assert reply.headers["Upgrade"] == "websocket"
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert body["code"] == "VALIDATION_ERROR" and body["message"]
    assert body["request_id"] == reply.headers["X-Request-Id"]
    assert body["details"] == [{"loc": ["header", "Upgrade"], "msg": "must be websocket"}]


def test_a_request_that_is_not_a_websocket_is_refused_in_the_apis_error_shape(
    served: Served,
) -> None:
    """A GET without the upgrade is 422; another method is 405 naming the GET a handshake
    is, as a route table answers a method its path does not serve."""
    url = f"http://127.0.0.1:{served.port}/?token=whatever"
    assert_upgrade_required(requests.get(url, timeout=10))
    head = requests.head(url, timeout=10)
    assert head.status_code == 422 and head.content == b"" and head.headers["X-Request-Id"]
    posted = requests.post(url, data=b"{}", timeout=10)
    assert posted.status_code == 405, posted.text
    assert posted.headers["Allow"] == "GET, HEAD"
    assert posted.json()["code"] == "METHOD_NOT_ALLOWED"
    assert posted.json()["request_id"] == posted.headers["X-Request-Id"]
    output = served.output()
    assert errors_in(output) == [], output
    assert [line["status"] for line in app_lines(output, "not a websocket")] == [422, 422, 405]


def test_a_client_message_over_the_limit_closes_the_connection_with_1009(served: Served) -> None:
    token = token_for(new_user())
    with connect(f"ws://127.0.0.1:{served.port}/?token={token}", open_timeout=10) as socket_:
        socket_.send(" " * CLIENT_MESSAGE_MAX_BYTES)  # not JSON, as large as may be: ignored
        socket_.send(json.dumps({"type": "ping"}))
        assert json.loads(socket_.recv(timeout=10)) == {"type": "pong"}
        socket_.send(" " * (CLIENT_MESSAGE_MAX_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_text_message_that_is_not_utf8_closes_with_1007_and_logs_no_error(
    served: Served,
) -> None:
    """Any client can send one: uvicorn's ERROR and traceback for it are kept out, and the
    app's close line says how the connection ended."""
    user = new_user()
    with connect(f"ws://127.0.0.1:{served.port}/?token={token_for(user)}") as socket_:
        with socket_.protocol_mutex:  # the client library sends only valid text: a raw frame
            socket_.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe{"))
            socket_.send_data()
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    time.sleep(0.5)  # the server logs the close after the client has gone
    output = served.output()
    assert errors_in(output) == [], output
    assert "Traceback" not in output, output
    [line] = [c for c in app_lines(output, "connection closed") if c["user_id"] == user]
    assert line["client_code"] == 1007, output


def test_the_apps_log_lines_are_json_on_stdout_as_every_functions_are(served: Served) -> None:
    """uvicorn configures only its own loggers: the app's lines would otherwise fall to
    Python's last resort (warnings and up, bare text on stderr)."""
    token = token_for(new_user())
    with connect(f"ws://127.0.0.1:{served.port}/?token={token}", open_timeout=10) as socket_:
        socket_.send(json.dumps({"type": "ping"}))
        assert json.loads(socket_.recv(timeout=10)) == {"type": "pong"}
    time.sleep(0.5)  # the server logs the close after the client has gone
    lines = [json.loads(line) for line in served.output().splitlines() if line.startswith("{")]
    closed = [line for line in lines if line["message"] == "connection closed"]
    assert closed and closed[0]["logger"] == "app.events.websocket", lines


def test_the_apps_lines_name_the_function_scf_names_in_its_environment(redis_db: Any) -> None:
    """SCF_FUNCTIONNAME is the function as deployed (`<app>-<stage>-ws`), as the other
    functions' lines name theirs; uvicorn's own lines stay as uvicorn writes them."""
    user = new_user()
    with _serving(FOLDER, SCF_FUNCTIONNAME="ai-platform-prod-ws") as server:
        assert server.refused("/", "not-a-token") == 401
        url = f"ws://127.0.0.1:{server.port}/?token={token_for(user)}"
        with connect(url, open_timeout=10) as socket_:
            socket_.send(json.dumps({"type": "ping"}))
            assert json.loads(socket_.recv(timeout=10)) == {"type": "pong"}
        time.sleep(0.5)  # the server logs the close after the client has gone
        output = server.output()
    assert errors_in(output) == [], output
    [refused] = app_lines(output, "handshake refused")
    [closed] = app_lines(output, "connection closed")
    assert refused["function"] == closed["function"] == "ai-platform-prod-ws", output
    assert closed["user_id"] == user and refused["request_id"] != closed["request_id"]


def test_a_refused_handshake_logs_no_error(served: Served) -> None:
    """uvicorn 0.38 logs a handshake answered with an HTTP response as an ERROR
    (Kludex/uvicorn#3138): the app's own refusals are kept out of it."""
    assert served.refused("/", "not-a-token") == 401
    with settings_env(ACCESS_TOKEN_TTL_S="1"):
        expired = token_for(new_user())
    time.sleep(2.1)
    assert served.refused("/", expired) == 401
    output = served.output()
    assert errors_in(output) == [], output
    refusals = app_lines(output, "handshake refused")
    assert [(r["level"], r["status"]) for r in refusals] == [("info", 401)] * 2, output
    assert [r["error"] for r in refusals] == ["AUTH_TOKEN_INVALID", "AUTH_TOKEN_EXPIRED"]


def test_a_handshake_refused_while_the_database_is_down_logs_no_error(redis_db: Any) -> None:
    user = new_user()
    token = token_for(user)
    redis_db.delete(cache.redis_key(profiles.key(user)))  # the profile must come from the database
    down = f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x"
    with _serving(FOLDER, DATABASE_URL=down, DB_POOL_ACQUIRE_TIMEOUT_S="2") as server:
        assert server.refused("/", token) == 503
        output = server.output()
    # The cause is an error where it is met; the refusal it leads to is not another one.
    assert {json.loads(line)["logger"] for line in errors_in(output)} == {"app.db"}, output
    refusals = app_lines(output, "handshake refused")
    assert [(r["level"], r["status"]) for r in refusals] == [("warning", 503)], output


def test_a_handshake_the_app_never_answers_or_crashes_in_is_still_an_error(
    redis_db: Any,
) -> None:
    with _serving(PROBE) as server:
        assert server.refused("/", "not-a-token") == 401  # the filter is in place
        assert server.refused("/unanswered", "x") == 500
        assert server.refused("/crash", "x") == 500
        assert server.refused("/", "not-a-token") == 401
        output = server.output()
    errors = errors_in(output)
    assert [line for line in errors if UNCOMPLETED in line] == [f"ERROR:    {UNCOMPLETED}"]
    assert [line for line in errors if "Exception in ASGI application" in line], output


def test_a_client_that_sends_ping_frames_and_never_reads_cannot_grow_the_servers_memory(
    served: Served,
) -> None:
    """Protocol pings are answered below the app, each with a pong as large: once the unread
    pongs pass the transport's high-water mark the server stops reading until they drain,
    so the client's sends stall, rather than the server's buffer growing (unbounded, 10 s
    of this grew the process by some 18 MB here, 118 MB on a faster machine)."""
    sock = connect_unread("127.0.0.1", served.port, f"/?token={token_for(new_user())}")
    before = rss_bytes(served.process.pid)
    flood = flood_pings(sock, seconds=10)
    time.sleep(0.5)  # whatever the server read is answered by now
    grown = rss_bytes(served.process.pid) - before
    sock.close()
    sent = f"{flood.sent / 2**20:.1f} MB of pings sent"
    assert flood.stalled, f"the server kept reading: {sent}, grew {grown / 2**20:.1f} MB"
    assert grown < 8 * 2**20, f"the server grew {grown / 2**20:.1f} MB; {sent}"
