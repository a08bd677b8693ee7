"""The layer's bytecode, on a layer of two small modules and no requirements (the whole
layer, for SCF's Python, is tests/test_scf_simulation.py's): a module the target compiles
ships its bytecode beside it; one it cannot compile ships as source, and the build says so,
as pip does when it installs. And the wheels it takes are ones SCF's glibc loads."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from infra.package import _download, build_layer, find_python

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = sys.implementation.cache_tag


def test_a_module_the_target_cannot_compile_ships_as_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    # A set of strings: CPython 3.10 writes its constant in the order of the strings' hashes,
    # which only a fixed hash seed makes the same on every build.
    (app / "good.py").write_text(f"def f(x):\n    return x in {set(map(str, range(20)))}\n")
    (app / "template.py").write_text('print "{{ name }}"\n')  # not Python 3
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# none\n")

    first = build_layer(tmp_path / "a", VERSION, requirements, app)
    with zipfile.ZipFile(first.path) as archive:
        names = set(archive.namelist())
    assert names == {
        "app/__init__.py",
        "app/good.py",
        "app/template.py",
        f"app/__pycache__/__init__.{TAG}.pyc",
        f"app/__pycache__/good.{TAG}.pyc",
    }
    assert "not compiled, shipped as source" in capsys.readouterr().err

    again = build_layer(tmp_path / "b", VERSION, requirements, app)
    assert again.path.read_bytes() == first.path.read_bytes()


def test_the_bytecode_is_what_scf_loads_whatever_python_variables_the_build_runs_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCF's CPython runs without -O and reads each module's `__pycache__` beside it: bytecode
    compiled under PYTHONOPTIMIZE (`.opt-1.pyc`) or written under PYTHONPYCACHEPREFIX would
    never be loaded there."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("assert True\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# none\n")
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "prefix"))

    layer = build_layer(tmp_path / "out", VERSION, requirements, app)
    with zipfile.ZipFile(layer.path) as archive:
        assert set(archive.namelist()) == {"app/__init__.py", f"app/__pycache__/__init__.{TAG}.pyc"}
    assert not (tmp_path / "prefix").exists()


def _on_path(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str, script: str) -> None:
    folder.mkdir()
    program = folder / name
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def test_a_program_named_for_the_version_that_is_no_cpython_of_it_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stub or broken shim that answers every command with success compiles nothing; an
    interpreter of another implementation writes bytecode SCF's CPython never reads."""
    _on_path(monkeypatch, tmp_path / "bin", "python3.98", "exit 0")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))

    assert find_python("3.98") is None


def test_without_a_python_of_the_target_the_build_stops_before_it_downloads_or_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# none\n")

    with pytest.raises(SystemExit) as stopped:
        build_layer(tmp_path / "out", "3.98", requirements, tmp_path)
    assert "no Python 3.98 here to compile the layer's bytecode" in str(stopped.value)
    assert "pyenv install 3.98" in str(stopped.value)
    assert not (tmp_path / "out").exists()


def _wheel(folder: Path, platform: str) -> Path:
    """A wheel of one empty module built for CPython 3.10 on `platform`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"glibcprobe-1.0-cp310-cp310-{platform}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("glibcprobe/__init__.py", "")
        info = "glibcprobe-1.0.dist-info"
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: glibcprobe\nVersion: 1.0\n"
        )
        wheel = f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp310-cp310-{platform}\n"
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.parametrize(
    ("platform", "taken"),
    [("manylinux2014_x86_64", True), ("manylinux_2_28_x86_64", False)],
)
def test_only_wheels_that_scf_glibc_loads_go_into_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str, taken: bool
) -> None:
    """SCF runs on CentOS 7.6, glibc 2.17: a wheel for a newer glibc would not import there.
    The wheel is offered only where the build finds its own (`built/`), no index asked."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    cache = tmp_path / "wheels"
    _wheel(cache / "built", platform)

    if taken:
        _download(cache, ["glibcprobe==1.0"], "3.10")
        assert [w.name for w in cache.glob("*.whl")] == [
            f"glibcprobe-1.0-cp310-cp310-{platform}.whl"
        ]
    else:
        with pytest.raises(SystemExit):
            _download(cache, ["glibcprobe==1.0"], "3.10")
        assert list(cache.glob("*.whl")) == []
