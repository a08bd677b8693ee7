"""The structure of shared/app holds (shared/app/README.md): imports only go down the layers,
no package or module imports one that imports it back, an import inside a function says why
on its line, and no module grows past what one reader holds in mind.

The import-linter contracts live in pyproject.toml; they are checked here against the code
as it is, and against copies with an upward import and a loop planted, so that the check
itself is known to fail when it should.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "shared" / "app"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 500
REASON = re.compile(r"#\s*(cold start|cycle):\s*\S")


def lint_imports(shared: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shared)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_contracts_hold() -> None:
    checked = lint_imports(APP.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 kept, 0 broken" in checked.stdout


def planted(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of shared/ with `line` added at the end of app/<module>."""
    copy = tmp_path / "shared"
    shutil.copytree(APP, copy / "app", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "app" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return copy


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    checked = lint_imports(planted(tmp_path, "quota/ledger.py", "import app.http.models"))
    assert checked.returncode != 0
    assert "app.quota is not allowed to import app.http" in checked.stdout


def test_a_loop_inside_one_layer_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    # `cache` imports `redis_client`; the other way round closes a loop between two ports,
    # which the layers allow (they share a layer) and the acyclic contract does not.
    checked = lint_imports(planted(tmp_path, "redis_client.py", "import app.cache"))
    assert checked.returncode != 0
    assert "Layers: imports only go down KEPT" in checked.stdout
    assert "No cycles are allowed in app" in checked.stdout


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each import written inside a function of the module."""
    source = path.read_text()
    lines = source.splitlines()
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child.lineno, lines[child.lineno - 1]))
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


def modules() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "migrations" not in p.parts)


def test_an_import_inside_a_function_says_why_on_its_line() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()}"
        for path in modules()
        for line, text in function_level_imports(path)
        if not REASON.search(text)
    ]
    assert not unexplained, (
        "imports inside functions are for cold start or a cycle that cannot be broken, "
        "and say which on the same line (`# cold start: ...`):\n" + "\n".join(unexplained)
    )


def test_the_reason_check_sees_an_unexplained_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import json\n    import csv  # cold start: rare\n")
    assert [t for _, t in function_level_imports(sample) if not REASON.search(t)] == [
        "    import json"
    ]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(APP)))
def test_no_module_is_too_long_to_hold_in_mind(path: Path) -> None:
    count = len(path.read_text().splitlines())
    assert count <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {count} lines"
