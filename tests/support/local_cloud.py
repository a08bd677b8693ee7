"""Start the local cloud for a test: in this process (`local_cloud(...)`, sharing the test
run's MariaDB database and Redis) or as a subprocess (`local_cloud_process(...)`, with the
environment it is given). Both answer on 127.0.0.1 at a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.functions import ROOT

TEST_CONFIGS = (ROOT / "serverless.yml", ROOT / "tests" / "functions" / "serverless.yml")
PYTHONPATH = f"{ROOT / 'shared'}{os.pathsep}{ROOT}"
_READY = re.compile(r"^local cloud ready: (http://127\.0\.0\.1:\d+)")


@contextmanager
def local_cloud(configs: tuple[Path, ...] = TEST_CONFIGS, **options: Any) -> Iterator[Any]:
    """An in-process LocalCloud (see infra.local.cloud for `options`), stopped after."""
    from infra.local import LocalCloud

    options.setdefault("port", 0)
    cloud = LocalCloud(configs, **options).start()
    try:
        yield cloud
    finally:
        cloud.stop()


@dataclass
class CloudProcess:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def stop(self, timeout: float = 20) -> int:
        """Ctrl-C, as a developer would; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def embedded_default_env(directory: Path, **more: str) -> dict[str, str]:
    """What `make run` runs on with nothing configured: APP_ENV=local, a fresh SQLite file in
    `directory`, in-process Redis; the local cloud fills in the rest (COS, payments)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PORT": "0",
        "APP_ENV": "local",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{directory / 'app.db'}",
        "REDIS_URL": "memory://",
        **more,
    }


@contextmanager
def local_cloud_process(
    env: dict[str, str],
    *,
    cwd: Path | str | None = None,
    args: tuple[str, ...] = (),
    start_timeout: float = 60,
) -> Iterator[CloudProcess]:
    """`python -m infra.local` with exactly `env` (plus PYTHONPATH if absent), on the port
    env["PORT"] names (set PORT=0 for a free one). Yields once the ready line is printed."""
    env = {"PYTHONPATH": PYTHONPATH, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", *args],
        cwd=str(cwd or ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def _drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = _READY.match(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=_drain, daemon=True)
    reader.start()
    ready.wait(start_timeout)
    cloud = CloudProcess(found[0] if found else "", process, output)
    try:
        if not found:
            cloud.stop()
            raise AssertionError("the local cloud did not start:\n" + "".join(output[-40:]))
        yield cloud
    finally:
        cloud.stop()
        reader.join(5)


def wait_for(predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; the value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
