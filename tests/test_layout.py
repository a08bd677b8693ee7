"""The deploy truth agrees with the code: serverless.yml, the function folders, the route
table, the migrations and the migrated schema. Written against whatever is declared, so
it keeps holding as functions, routes and migrations are added."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.functions import FUNCTIONS, ROOT, handler

MIGRATIONS = ROOT / "shared" / "app" / "db" / "migrations" / "versions"
MIGRATION_FILE = re.compile(r"^(\d{14})_[a-z0-9_]+\.py$")
MAX_INDEX_LINES = 8


def _config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "serverless.yml").read_text())


def _declared() -> dict[str, Any]:
    return _config()["inputs"]["functions"]


def _triggers() -> list[dict[str, Any]]:
    return _config()["inputs"].get("triggers") or []


def _apis() -> list[dict[str, Any]]:
    apis: list[dict[str, Any]] = []
    for trigger in _triggers():
        if trigger.get("type") == "apigw":
            default = trigger.get("function")
            for api in trigger["parameters"].get("apis") or []:
                apis.append({**api, "function": api.get("function", default)})
    return apis


def _folders() -> set[str]:
    return {p.name for p in FUNCTIONS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}


def _key(method: str, path: str) -> tuple[str, str]:
    return method.upper(), path


def test_every_function_folder_is_declared_and_every_declared_function_has_its_folder() -> None:
    declared = _declared()
    assert set(declared) == _folders()
    for name, spec in declared.items():
        assert spec["src"].rstrip("/") == f"./{name}", name
        assert spec["handler"] == "index.main_handler", name
        assert spec.get("layers"), f"{name} does not use the layer"


def test_function_names_are_kebab_case() -> None:
    for name in _declared():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name


@pytest.mark.parametrize("name", sorted(_folders()))
def test_index_is_a_thin_entrypoint(name: str) -> None:
    source = (FUNCTIONS / name / "index.py").read_text()
    lines = [line for line in source.splitlines() if line.strip()]
    assert len(lines) <= MAX_INDEX_LINES, f"{name}/index.py: {len(lines)} lines"
    tree = ast.parse(source)
    logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    assert not [node for node in ast.walk(tree) if isinstance(node, logic)], name
    bound = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            bound |= {alias.asname or alias.name for alias in node.names}
    assert "main_handler" in bound, f"{name}/index.py does not define main_handler"
    assert callable(handler(name))


def test_every_apigw_entry_is_a_route_of_the_table_and_of_its_function() -> None:
    from app.api import all_routes

    declared = _declared()
    table = Counter(_key(r.method, r.path) for r in all_routes())
    assert all(count == 1 for count in table.values()), "a route is declared twice in the table"
    entries = [(_key(api["method"], api["path"]), api["function"]) for api in _apis()]
    exposed = Counter(key for key, _ in entries)

    for key, count in exposed.items():
        assert count == 1, f"{key} has {count} API Gateway entries"
        assert key in table, f"{key} is in serverless.yml but no route module declares it"
    for key in table:
        assert key in exposed, f"route {key} has no API Gateway entry in serverless.yml"

    by_function: dict[str, set[tuple[str, str]]] = {}
    for key, function in entries:
        assert function in declared, f"{key} points to undeclared function {function!r}"
        by_function.setdefault(function, set()).add(key)
    for function, keys in by_function.items():
        served = {_key(r.method, r.path) for r in handler(function).routes}
        assert served == keys, f"{function} serves {sorted(served)}, API Gateway: {sorted(keys)}"


def test_http_functions_are_all_exposed() -> None:
    exposed = {api["function"] for api in _apis()}
    for name in _declared():
        if hasattr(handler(name), "routes"):
            assert name in exposed, f"{name} serves HTTP routes but no API Gateway entry names it"


def test_timer_and_queue_triggers_point_to_declared_functions() -> None:
    declared = _declared()
    for trigger in _triggers():
        kind = trigger.get("type")
        if kind == "apigw":
            continue
        assert kind in ("timer", "cmq"), f"unknown trigger type {kind!r}"
        assert trigger.get("function") in declared, trigger
        if kind == "timer":
            cron = str(trigger["parameters"]["cronExpression"])
            assert len(cron.split()) == 7, f"{cron!r} is not a 7-field SCF cron"


def test_migrations_form_one_linear_chain_named_by_their_timestamp() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    files = sorted(p.name for p in MIGRATIONS.glob("*.py"))
    assert files
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS.parent))
    scripts = ScriptDirectory.from_config(config)
    heads = scripts.get_heads()
    assert len(heads) == 1, f"more than one head: {heads}"

    chain = list(scripts.walk_revisions())  # head first
    assert len(chain) == len(files), "a migration file is not on the chain"
    for script in chain:
        name = Path(script.path).name
        match = MIGRATION_FILE.match(name)
        assert match, f"{name} is not YYYYMMDDHHMMSS_<what>.py"
        assert script.revision == match.group(1), f"{name} has revision {script.revision}"
        assert not isinstance(script.down_revision, tuple | list), f"{name} merges branches"
        assert len(script.nextrev) <= 1, f"{name} has more than one child"
        if script.down_revision is not None:
            assert script.down_revision < script.revision, f"{name} goes back in time"
    assert chain[-1].down_revision is None


def test_migrated_schema_matches_the_table_definitions(database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.db.engine import get_engine
    from app.db.tables import metadata

    with get_engine().connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    assert diffs == [], diffs


def test_every_table_compares_text_byte_for_byte(database: str) -> None:
    """Ids, codes, keys and refs differ by case; a _ci collation would merge them."""
    from sqlalchemy import text

    from app.db.engine import get_engine

    with get_engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'"
            )
        ).all()
        columns = conn.execute(
            text(
                "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'"
                " AND COLLATION_NAME IS NOT NULL AND COLLATION_NAME <> 'utf8mb4_bin'"
            )
        ).all()
    assert rows and {collation for _, collation in rows} == {"utf8mb4_bin"}, rows
    assert columns == []
