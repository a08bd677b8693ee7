"""The packaged artefacts work the way SCF runs them: the layer zip unpacked into a stand-in
for /opt, a function zip into a stand-in for /var/user, and a fresh CPython 3.10 whose
sys.path holds only those two and the standard library, invoking `index.main_handler`
with an API Gateway event against the test run's MariaDB and Redis.

Without a Python 3.10 on the machine, the layer is built for the running interpreter's
version instead, and the test says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.package import build_function, build_layer, find_python
from tests.support.function_url import context, event

pytestmark = pytest.mark.slow

# Runs in the child. It puts the two SCF paths in front of the standard library, proves
# nothing else is importable from site-packages, and answers with the integration response.
CHILD = """
import json, sys
var_user, opt = sys.argv[1], sys.argv[2]
assert not [p for p in sys.path if "site-packages" in p or "dist-packages" in p], sys.path
sys.path[:0] = [var_user, opt]
payload = json.load(sys.stdin)
import index
import app, pydantic_core
assert app.__file__.startswith(opt) and pydantic_core.__file__.startswith(opt)
result = index.main_handler(payload["event"], payload["context"])
print(json.dumps({"result": result, "version": list(sys.version_info[:2]), "path": sys.path}))
"""

# The settings the test run uses (tests/conftest.py): the child sees these and nothing else.
SETTINGS = ("APP_ENV", "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "LOG_LEVEL")


@pytest.fixture(scope="module")
def scf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = find_python("3.10")
    version = "3.10"
    if python is None:
        python = sys.executable
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        print(f"no Python 3.10 found: layer built for and run on Python {version}")
    base = tmp_path_factory.mktemp("scf")
    layer = build_layer(base / "dist" / "layer", python_version=version)
    opt = base / "opt"
    with zipfile.ZipFile(layer.path) as archive:
        archive.extractall(opt)
    return {"python": python, "version": version, "base": base, "opt": opt}


def _invoke(scf: dict[str, Any], function: str, method: str, path: str, **kwargs: Any) -> Any:
    var_user = scf["base"] / "var" / function / "user"
    if not var_user.exists():
        artefact = build_function(function, scf["base"] / "dist" / "functions")
        with zipfile.ZipFile(artefact.path) as archive:
            archive.extractall(var_user)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k in SETTINGS or k.startswith("DB_POOL_")})
    payload = {"event": event(method, path, **kwargs), "context": context(function)}
    child = subprocess.run(
        [scf["python"], "-I", "-S", "-B", "-c", CHILD, str(var_user), str(scf["opt"])],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        cwd=var_user,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["version"] == [int(part) for part in scf["version"].split(".")]
    assert [p for p in out["path"] if p.startswith(str(scf["base"]))] == [
        str(var_user),
        str(scf["opt"]),
    ]
    return out["result"]


# Runs in the target interpreter: every module under the layer has bytecode that interpreter
# uses as it is (its magic, hash-checked, the hash of the source beside it), recording the
# path SCF runs it from. Prints how many modules it checked.
BYTECODE = """
import importlib.util, marshal, pathlib, sys
opt = pathlib.Path(sys.argv[1])
tag = sys.implementation.cache_tag
sources = sorted(opt.rglob("*.py"))
for source in sources:
    pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
    data = pyc.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER, pyc
    assert int.from_bytes(data[4:8], "little") == 0b11, pyc
    assert data[8:16] == importlib.util.source_hash(source.read_bytes()), pyc
    code = marshal.loads(data[16:])
    assert code.co_filename == "/opt/" + source.relative_to(opt).as_posix(), code.co_filename
print(len(sources))
"""


def test_layer_holds_app_and_wheels_for_the_target_python(scf: dict[str, Any]) -> None:
    opt: Path = scf["opt"]
    assert (opt / "app" / "__init__.py").is_file()
    tag = "cpython-" + scf["version"].replace(".", "")
    assert list((opt / "pydantic_core").glob(f"_pydantic_core.{tag}-*.so"))
    assert not list(opt.glob("swagger_ui_bundle/vendor/*/*.map"))


def test_every_module_of_the_layer_ships_bytecode_the_runtime_uses(scf: dict[str, Any]) -> None:
    opt: Path = scf["opt"]
    checked = subprocess.run(
        [scf["python"], "-I", "-S", "-B", "-c", BYTECODE, str(opt)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr[-4000:]
    assert int(checked.stdout) == len(list(opt.rglob("*.py"))) > 1000
    tag = "cpython-" + scf["version"].replace(".", "")
    assert {pyc.name.split(".")[-2] for pyc in opt.rglob("*.pyc")} == {tag}


def test_a_rebuild_elsewhere_is_byte_identical(scf: dict[str, Any]) -> None:
    again = build_layer(scf["base"] / "again" / "layer", python_version=scf["version"])
    assert again.path.read_bytes() == (scf["base"] / "dist" / "layer" / "layer.zip").read_bytes()


def test_health_answers_200_from_the_unpacked_zips(scf: dict[str, Any]) -> None:
    result = _invoke(scf, "health", "GET", "/health")
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body["status"] == "ok"
    assert set(body["checks"].values()) == {"ok"}


def test_openapi_and_docs_answer_from_the_unpacked_zips(scf: dict[str, Any]) -> None:
    result = _invoke(scf, "openapi", "GET", "/openapi.json")
    assert result["statusCode"] == 200, result
    document = json.loads(result["body"])
    assert document["openapi"].startswith("3.")
    assert "/health" in document["paths"]

    asset = _invoke(
        scf,
        "docs",
        "GET",
        "/docs/swagger-ui-bundle.js",
    )
    assert asset["statusCode"] == 200, asset
