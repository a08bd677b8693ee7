"""Cold start per SCF function: how long `import index` takes in a fresh interpreter.

For every folder under functions/, the median over N fresh interpreters (default 5) of the
time from just before `import index` to just after, measured inside the child with
PYTHONPATH=<function dir>:shared, and the child's whole process time (interpreter start
included) measured by the parent. The same for a minimal FastAPI + Mangum app serving one
route, the common way to put a Python web app on a function, printed side by side with
ratios. One untimed run per target first, so every timed run finds its .pyc files.

    .venv/bin/python bench/cold_start.py [--runs 5] [function ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"

CHILD = """
import json, time
started = time.perf_counter()
import index
elapsed = time.perf_counter() - started
assert callable(index.main_handler)
print(json.dumps({"import_ms": elapsed * 1000}))
"""

FASTAPI_APP = """
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


main_handler = Mangum(app, lifespan="off")
"""

# No test settings and no PYTHON* variables from the caller: each child starts like an
# instance on the embedded default.
_KEEP = ("PATH", "HOME", "LANG", "TMPDIR")


def _env(function_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env["PYTHONPATH"] = f"{function_dir}{os.pathsep}{ROOT / 'shared'}"
    env["LOG_LEVEL"] = "WARNING"
    return env


def _one(function_dir: Path) -> tuple[float, float]:
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=function_dir,
        env=_env(function_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    process_ms = (time.perf_counter() - started) * 1000
    if child.returncode != 0:
        raise SystemExit(f"{function_dir.name}: import failed\n{child.stderr}")
    import_ms = json.loads(child.stdout.strip().splitlines()[-1])["import_ms"]
    return float(import_ms), process_ms


def measure(function_dir: Path, runs: int) -> tuple[float, float]:
    _one(function_dir)  # warm the .pyc files
    samples = [_one(function_dir) for _ in range(runs)]
    return (
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] for s in samples),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Median import time of each function's index.py")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("functions", nargs="*", help="function folder names (default: all)")
    args = parser.parse_args(argv)
    names = args.functions or sorted(p.parent.name for p in FUNCTIONS.glob("*/index.py"))

    with tempfile.TemporaryDirectory() as tmp:
        alternative = Path(tmp) / "fastapi-mangum"
        alternative.mkdir()
        (alternative / "index.py").write_text(FASTAPI_APP)
        base_import, base_process = measure(alternative, args.runs)

    print(f"median of {args.runs} fresh interpreters, Python {sys.version.split()[0]}")
    header = (
        f"{'function':<28}{'import ms':>11}{'x FastAPI':>11}{'process ms':>12}{'x FastAPI':>11}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        import_ms, process_ms = measure(FUNCTIONS / name, args.runs)
        print(
            f"{name:<28}{import_ms:>11.1f}{import_ms / base_import:>11.2f}"
            f"{process_ms:>12.1f}{process_ms / base_process:>11.2f}"
        )
    print("-" * len(header))
    alternative_name = "FastAPI + Mangum (1 route)"
    print(f"{alternative_name:<28}{base_import:>11.1f}{1:>11.2f}{base_process:>12.1f}{1:>11.2f}")


if __name__ == "__main__":
    main()
