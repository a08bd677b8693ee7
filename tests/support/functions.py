"""Load a function's index.py the way SCF does, each under its own module name (the local
cloud's loader, so tests and the local cloud import functions the same way), or run code in
a fresh interpreter set up as a new SCF instance of a function."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra import manifest
from infra.functions import load_handler
from tests.support.function_url import Reply, call

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def handler(name: str, entry: str = "index.main_handler") -> Any:
    """functions/<name>/index.py's main_handler (an http_handler also carries `.routes`),
    or another `entry` (a web function's `index.app`)."""
    return load_handler(name, FUNCTIONS / name, entry)


def time_limit_ms(name: str) -> int:
    """The time limit SCF gives each invocation of function `name`: its timeout
    (serverless.yml)."""
    return manifest.load().functions[name].timeout_s * 1000


def admin_job(job: str, token: str) -> Reply:
    """An admin's `POST /admin/jobs/{job}` to admin-jobs-run, under that function's own time
    limit: a job's run is bounded by it (`app.clock.run_budget_s`)."""
    return call(
        handler("admin-jobs-run"),
        "POST",
        f"/admin/jobs/{job}",
        token=token,
        time_limit_ms=time_limit_ms("admin-jobs-run"),
    )


def fresh_instance(
    function: str, script: str, *args: str, env: Mapping[str, str] = {}
) -> subprocess.CompletedProcess[str]:
    """`script` run with `args` in a fresh interpreter as SCF starts an instance: in the
    function's folder, with only the folder and the layer on the path and a bare environment
    (plus `env`). A script that fails fails the test."""
    folder = FUNCTIONS / function
    child_env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    child_env.update(env, PYTHONPATH=f"{folder}{os.pathsep}{ROOT / 'shared'}")
    child = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=folder,
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    return child


def in_fresh_instance(function: str, script: str, *args: str, env: Mapping[str, str] = {}) -> str:
    """The last line `script` prints in a fresh instance (`fresh_instance`)."""
    return fresh_instance(function, script, *args, env=env).stdout.strip().splitlines()[-1]
