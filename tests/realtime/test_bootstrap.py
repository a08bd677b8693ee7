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
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.functions import FUNCTIONS, ROOT
from tests.support.pipelines import token_for
from tests.support.quota import new_user

FOLDER = FUNCTIONS / "ws"


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


@pytest.fixture
def served(redis_db: Any) -> Iterator[Served]:
    port = _free_port()
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update({k: os.environ[k] for k in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "JWT_SECRET")})
    env["PYTHONPATH"] = f"{FOLDER}{os.pathsep}{ROOT / 'shared'}"
    server = subprocess.Popen(
        _command(port), cwd=FOLDER, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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


def test_scf_bootstrap_serves_the_app_on_its_port(served: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{served.port}/?token=bad", open_timeout=10)
    assert refused.value.response.status_code == 401
    token = token_for(new_user())
    with connect(f"ws://127.0.0.1:{served.port}/?token={token}", open_timeout=10) as socket_:
        socket_.send(json.dumps({"type": "ping"}))
        assert json.loads(socket_.recv(timeout=10)) == {"type": "pong"}


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
