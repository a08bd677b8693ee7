"""Build what the deployer (infra/deploy) uploads: the layer zip and one zip per function.

`dist/layer/layer.zip` holds `app/` (shared/app) and every runtime requirement
(requirements.txt) unpacked from manylinux x86_64 wheels for CPython 3.10, SCF's newest
Python runtime, all at the zip root: SCF unpacks a layer to /opt and puts /opt on
PYTHONPATH. The same tree is left unpacked in `dist/layer/content/`, to look into.

`dist/functions/<name>.zip` holds one function folder's files at its root (/var/user on
SCF), an executable file (a web function's `scf_bootstrap`) with mode 755. Both are
byte-identical when rebuilt from the same inputs: the deployer compares them by their
sha256.

The layer also ships every module's bytecode, compiled by a CPython of the target version.
Everything but /tmp is read-only on SCF
(https://cloud.tencent.com/document/product/583/33924), so without it every cold start
compiles each module it imports from source: about 2.5 times the import of the same modules
from bytecode (bench/bytecode.py). The bytecode is hash-checked (`checked-hash`): the
runtime uses it only while it matches its source, whatever times the unpacked files carry.
Its recorded paths are the ones SCF runs from (`/opt/...`), and compiled in one process with
a fixed hash seed it is the same bytes on every build.

Wheels are cached under `.local/wheels/<hash of requirements.txt and Python version>/`, so
a rerun with unchanged requirements needs no network. Packages published only as source
archives are built into wheels first (`pip wheel --no-deps`), with no C compiler
(`CC=false`): one whose C extension is optional (crcmod, which the COS SDK imports) builds
its pure-Python form, and one that needs a compiler fails here rather than on SCF, since a
wheel compiled here would not match SCF's platform.

    python -m infra.package [--python-version 3.10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
SCF_PYTHON = "3.10"
# What SCF's glibc loads: its system is CentOS 7.6, glibc 2.17
# (https://cloud.tencent.com/document/product/583/56126). A manylinux_2_24 or _2_28 wheel
# needs a newer glibc and fails to import there (greenlet 3.5 ships only those).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")
LAYER_NAME = "layer.zip"
# Fixed timestamps make a rebuild from the same inputs byte-identical.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# swagger-ui-bundle ships every Swagger UI build; /docs serves only these two.
_SWAGGER_KEEP = {"swagger-ui-bundle.js", "swagger-ui.css"}
_MISSING = re.compile(r"No matching distribution found for ([^\s]+)")


@dataclass(frozen=True)
class Artifact:
    path: Path
    files: int
    unpacked_bytes: int

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def requirement_lines(requirements: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line]


def cache_dir(requirements: Path, python_version: str) -> Path:
    digest = hashlib.sha256()
    digest.update("\n".join(requirement_lines(requirements)).encode())
    digest.update(f"\ncp{python_version}\n{' '.join(PLATFORMS)}".encode())
    return ROOT / ".local" / "wheels" / digest.hexdigest()[:16]


def _pip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args]
    environ = None if env is None else {**os.environ, **env}
    return subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, check=False, env=environ
    )


def _is_pure(wheel: Path) -> bool:
    return wheel.name.endswith("-none-any.whl")


# No compiler: a C extension that is optional is left out (and pip's cache, which may hold
# a wheel compiled earlier, is not used).
_NO_COMPILER = {"CC": "false", "CXX": "false", "LDSHARED": "false"}


def _build_source_only(requirement: str, built: Path) -> None:
    result = _pip(
        "wheel", "--no-deps", "--no-binary", ":all:", "--no-cache-dir", "-q",
        "-w", str(built), requirement, env=_NO_COMPILER,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"pip wheel {requirement} failed:\n{result.stderr}")
    impure = [w.name for w in built.glob("*.whl") if not _is_pure(w)]
    if impure:
        raise SystemExit(
            f"{', '.join(impure)}: built from source with a compiled part; it would not match "
            "SCF's platform. Pin a version that ships a manylinux wheel."
        )


def _download(cache: Path, requirement_args: list[str], python_version: str) -> None:
    built = cache / "built"
    built.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    tried: set[str] = set()
    while True:
        result = _pip(
            "download", "-q", "--only-binary=:all:", "--python-version", python_version,
            "--implementation", "cp", *platforms, "--find-links", str(built),
            "-d", str(cache), *requirement_args,
        )  # fmt: skip
        if result.returncode == 0:
            return
        missing = _MISSING.search(result.stderr)
        if missing is None or missing.group(1) in tried:
            raise SystemExit(f"pip download failed:\n{result.stderr}")
        # Published as a source archive only: build it here, then resolve again.
        tried.add(missing.group(1))
        _build_source_only(missing.group(1), built)


def _target_environment(python_version: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def _unmet(wheels: list[Path], python_version: str) -> list[str]:
    """Dependencies the target needs and no wheel provides.

    pip evaluates `python_full_version` markers against the interpreter running it, not
    against --python-version: run from 3.11.7, it drops redis's
    `async-timeout; python_full_version < "3.11.3"`, which 3.10 needs. Checked here with
    the target's own values."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = _target_environment(python_version)
    present = {canonicalize_name(w.name.split("-", 1)[0]) for w in wheels}
    unmet: dict[str, str] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            lines = archive.read(meta).decode("utf-8", "replace").splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(environment):
                continue
            name = canonicalize_name(req.name)
            if name not in present:
                unmet[name] = f"{req.name}{req.specifier}"
    return sorted(unmet.values())


def fetch_wheels(requirements: Path, python_version: str = SCF_PYTHON) -> list[Path]:
    """The wheels of the whole runtime set for `python_version`, from the cache if complete."""
    cache = cache_dir(requirements, python_version)
    done = cache / ".complete"
    if not done.exists():
        _download(cache, ["-r", str(requirements)], python_version)
        previous: list[str] = []
        while unmet := _unmet(sorted(cache.glob("*.whl")), python_version):
            if unmet == previous:
                raise SystemExit(f"no wheel satisfies {', '.join(unmet)}")
            _download(cache, unmet, python_version)
            previous = unmet
        done.touch()
    return sorted(cache.glob("*.whl"))


def _wheel_target(name: str) -> str | None:
    """Where a wheel member lands in the layer, or None for what SCF never needs."""
    parts = PurePosixPath(name).parts
    if parts and parts[0].endswith(".data"):
        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
            return None  # scripts, headers, data files: no use on /opt
        parts = parts[2:]
    return "/".join(parts) if _keep(parts) else None


def _keep(parts: tuple[str, ...]) -> bool:
    if not parts or parts[-1].endswith(".pyc") or "__pycache__" in parts:
        return False
    top = parts[0]
    if not top.endswith(".dist-info") and len(parts) > 2 and parts[1] in ("tests", "test"):
        return False  # a package's own test suite (greenlet/tests, certifi/tests)
    if top == "swagger_ui_bundle" and "vendor" in parts and len(parts) > 3:
        return parts[-1] in _SWAGGER_KEEP
    return True


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((mode or 0o644) & 0xFFFF) << 16
    return info


def _tree(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            yield rel.as_posix(), path


def _layer_entries(wheels: Iterable[Path], app_dir: Path) -> Iterator[tuple[str, bytes, int]]:
    for rel, path in _tree(app_dir):
        yield f"app/{rel}", path.read_bytes(), 0o644
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                target = None if info.is_dir() else _wheel_target(info.filename)
                if target is not None:
                    yield target, archive.read(info), (info.external_attr >> 16) & 0o777


def _cache_tag(version: str) -> str:
    """The tag of the bytecode SCF's CPython of `version` reads (`cpython-310`)."""
    return f"cpython-{version.replace('.', '')}"


def find_python(version: str) -> str | None:
    """A CPython of `version` (`3.10`) on this machine: this one, one on PATH, or pyenv's.

    Each is asked for its bytecode's tag, which names the files it writes: a stub or broken
    shim that answers anything with success, or another implementation of the same version
    (PyPy writes `pypy310`), would ship bytecode SCF's CPython never reads."""
    if sys.implementation.cache_tag == _cache_tag(version):
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)  # noqa: S603
        found = Path(root.stdout.strip()).glob(f"versions/{version}.*/bin/python{version}")
        candidates += sorted(map(str, found), reverse=True)
    probe = "import sys; print(sys.implementation.cache_tag)"
    for candidate in filter(None, candidates):
        answer = subprocess.run(  # noqa: S603
            [candidate, "-c", probe], capture_output=True, text=True, check=False
        )
        if answer.returncode == 0 and answer.stdout.strip() == _cache_tag(version):
            return candidate
    return None


def _find_compiler(python_version: str) -> str:
    python = find_python(python_version)
    if python is None:
        raise SystemExit(
            f"no Python {python_version} here to compile the layer's bytecode for SCF's "
            f"runtime: install one (pyenv install {python_version}) or put python{python_version} "
            "on PATH"
        )
    return python


def _compile_environment() -> dict[str, str]:
    """This process's variables but Python's own: PYTHONOPTIMIZE would write `.opt-N.pyc`,
    PYTHONPYCACHEPREFIX put the bytecode outside the layer, and SCF's CPython reads neither;
    a fixed hash seed writes sets and frozensets in the same order on every build."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**kept, "PYTHONHASHSEED": "0"}


def _compile(content: Path, python: str) -> list[Path]:
    """Compile every module under `content` with the target's CPython; the bytecode files."""
    result = subprocess.run(  # noqa: S603
        [python, "-m", "compileall", "-q", "-d", "/opt", "--invalidation-mode", "checked-hash",
         str(content)],
        capture_output=True, text=True, check=False, env=_compile_environment(),
    )  # fmt: skip
    compiled = sorted(content.rglob("*.pyc"))
    if not compiled:
        raise SystemExit(f"compiling the layer with {python} failed:\n{result.stderr}")
    if result.returncode != 0:
        # As pip does when it installs: a file the target cannot compile (a template, code
        # for another version) ships as it is; the runtime would refuse it only if imported.
        print(f"not compiled, shipped as source:\n{result.stdout}", file=sys.stderr)
    return compiled


def build_layer(
    out_dir: Path | None = None,
    python_version: str = SCF_PYTHON,
    requirements: Path = ROOT / "requirements.txt",
    app_dir: Path = ROOT / "shared" / "app",
) -> Artifact:
    """Write the layer zip and its unpacked copy; the first file of a path wins (the
    tencentcloud namespace `__init__.py` comes in every tencentcloud-sdk wheel)."""
    out_dir = out_dir or ROOT / "dist" / "layer"
    python = _find_compiler(python_version)  # before any download or file written
    wheels = fetch_wheels(requirements, python_version)
    content = out_dir / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    modes: dict[str, int] = {}
    for name, data, mode in _layer_entries(wheels, app_dir):
        if name in modes:
            continue
        modes[name] = mode
        target = content / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for pyc in _compile(content, python):
        modes[pyc.relative_to(content).as_posix()] = 0o644
    layer = out_dir / LAYER_NAME
    total = 0
    with zipfile.ZipFile(layer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, mode in modes.items():
            data = (content / name).read_bytes()
            total += len(data)
            archive.writestr(_zip_info(name, mode), data)
    return Artifact(layer, len(modes), total)


def function_names(functions_dir: Path = ROOT / "functions") -> list[str]:
    return sorted(p.name for p in functions_dir.iterdir() if (p / "index.py").is_file())


def build_function(
    name: str, out_dir: Path | None = None, functions_dir: Path = ROOT / "functions"
) -> Artifact:
    out_dir = out_dir or ROOT / "dist" / "functions"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    files = total = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, path in _tree(functions_dir / name):
            data = path.read_bytes()
            # A web function's scf_bootstrap is run as a program: it keeps its execute bits.
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            archive.writestr(_zip_info(rel, mode), data)
            files, total = files + 1, total + len(data)
    return Artifact(target, files, total)


def _human(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB" if size >= 1_048_576 else f"{size / 1024:.1f} KB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default=SCF_PYTHON)
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    layer = build_layer(args.out / "layer", args.python_version)
    unpacked = _human(layer.unpacked_bytes)
    print(f"{layer.path}: {_human(layer.size)} ({layer.files} files, {unpacked} unpacked)")
    for name in function_names():
        fn = build_function(name, args.out / "functions")
        print(f"  {name}.zip: {_human(fn.size)} ({fn.files} files)")


if __name__ == "__main__":
    main()
