"""What the layer's bytecode saves at a cold start on SCF: each HTTP function's `import index`
from the packaged layer as SCF runs it, with the bytecode the layer ships against the same
layer without it, measured side by side in one run.

    PYTHONPATH=shared:. .venv/bin/python bench/bytecode.py [--runs 7] [name ...]

SCF unpacks the layer to /opt, which is read-only: a module without bytecode there is
compiled from source at every cold start, since the compiled result cannot be kept. Here the
layer is built as `make package` builds it (`infra.package.build_layer`, for CPython 3.10,
with that interpreter), unpacked twice into a temporary folder, once as shipped and once
without its `__pycache__` folders, and both made read-only; each function's zip is unpacked
beside them. Each run is a fresh CPython 3.10 that writes no bytecode (`-B`), sees only the
function's folder, the layer and the standard library (`-I -S`, as tests/test_scf_simulation
runs them), and measures its own `import index` (the import only: no request, so no service
is needed). The two layers take turns within each run. Printed: the median import of each
function from each layer and their ratio (without / with).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from infra.manifest import load
from infra.package import SCF_PYTHON, build_function, build_layer, find_python

CHILD = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
start = time.perf_counter()
import index
print((time.perf_counter() - start) * 1000)
"""
# What importing a function needs of the settings; nothing is connected to.
ENVIRONMENT = {"APP_ENV": "test", "LANG": "C.UTF-8"}


def _unpack(archive: Path, into: Path, *, bytecode: bool) -> Path:
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            if bytecode or "__pycache__/" not in name:
                zipped.extract(name, into)
    return into


def _read_only(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _import_ms(python: str, function: Path, layer: Path) -> float:
    child = subprocess.run(
        [python, "-I", "-S", "-B", "-c", CHILD, str(function), str(layer)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **ENVIRONMENT},
        cwd=function,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"import index of {function.name} failed:\n{child.stderr[-2000:]}")
    return float(child.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("names", nargs="*", help="functions (default: every HTTP function)")
    args = parser.parse_args()
    python = find_python(SCF_PYTHON)
    if python is None:
        raise SystemExit(f"no Python {SCF_PYTHON} here: the layer's bytecode is for it")
    names = args.names or sorted(spec.name for spec in load().http_functions)

    base = Path(tempfile.mkdtemp(prefix="bench-bytecode-"))
    try:
        print("building the layer ...", file=sys.stderr, flush=True)
        layer = build_layer(base / "dist" / "layer")
        layers = {
            "bytecode": _unpack(layer.path, base / "opt", bytecode=True),
            "source": _unpack(layer.path, base / "opt-source", bytecode=False),
        }
        functions = {
            name: _unpack(
                build_function(name, base / "dist" / "functions").path,
                base / "var" / name,
                bytecode=True,
            )
            for name in names
        }
        for folder in [*layers.values(), *functions.values()]:
            _read_only(folder)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for name, function in functions.items():
                for kind, opt in layers.items():
                    times.setdefault((name, kind), []).append(_import_ms(python, function, opt))
    finally:
        if base.exists():
            _writable(base)
            shutil.rmtree(base)

    print(f"import index on CPython {SCF_PYTHON}, medians of {args.runs}, in ms")
    print(f"{'function':<26}{'bytecode':>10}{'source':>10}{'ratio':>8}")
    ratios = []
    for name in names:
        shipped = statistics.median(times[(name, "bytecode")])
        source = statistics.median(times[(name, "source")])
        ratios.append(source / shipped)
        print(f"{name:<26}{shipped:>10.1f}{source:>10.1f}{source / shipped:>7.2f}x")
    print(f"source / bytecode: {min(ratios):.2f}x to {max(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
