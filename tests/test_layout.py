"""The deploy truth agrees with the code: serverless.yml, the function folders, the route
table, the custom domain's path mapping, the contract's routes, the migrations and the
migrated schema. Written against whatever is declared, so it keeps holding as functions,
routes and migrations are added."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from infra import manifest, routes
from infra.manifest import Manifest
from tests.support.contract import route_table
from tests.support.functions import FUNCTIONS, ROOT, handler

MIGRATIONS = ROOT / "shared" / "app" / "db" / "migrations" / "versions"
MIGRATION_FILE = re.compile(r"^(\d{14})_[a-z0-9_]+\.py$")
MAX_INDEX_LINES = 8


def _manifest() -> Manifest:
    return manifest.load()


def _folders() -> set[str]:
    return {p.name for p in FUNCTIONS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}


def _key(method: str, path: str) -> tuple[str, str]:
    return method.upper(), path


def test_every_function_folder_is_declared_and_every_declared_function_has_its_folder() -> None:
    declared = _manifest().functions
    assert set(declared) == _folders()
    for name, spec in declared.items():
        assert spec.directory == FUNCTIONS / name, name
        assert spec.handler == ("index.app" if spec.web else "index.main_handler"), name


def test_function_names_are_kebab_case() -> None:
    for name in _manifest().functions:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name


@pytest.mark.parametrize("name", sorted(_folders()))
def test_index_is_a_thin_entrypoint(name: str) -> None:
    source = (FUNCTIONS / name / "index.py").read_text()
    lines = [line for line in source.splitlines() if line.strip() and not line.startswith("#")]
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
    entry = "app" if _manifest().functions[name].web else "main_handler"
    assert entry in bound, f"{name}/index.py does not define {entry}"
    assert callable(handler(name, f"index.{entry}"))


def test_a_web_function_starts_its_app_on_port_9000_from_an_executable_scf_bootstrap() -> None:
    """SCF starts a web function by running `scf_bootstrap` (mode 755), which must serve on
    0.0.0.0:9000 with the runtime's Python named by its absolute path; WebSocket on, the
    idle timeout is within the time limit, and the server closes before that limit."""
    web = [spec for spec in _manifest().functions.values() if spec.web]
    assert web, "the ws function is a web function"
    for spec in web:
        assert spec.web is not None
        bootstrap = spec.directory / "scf_bootstrap"
        text = bootstrap.read_text()
        assert text.startswith("#!/bin/bash\n") and bootstrap.stat().st_mode & 0o755 == 0o755
        assert "index:app" in text and "--host 0.0.0.0 --port 9000" in text
        assert re.search(r"exec /var/lang/python310/bin/python3 ", text), spec.runtime
        assert spec.runtime == "Python3.10"
        if spec.web.websocket_idle_timeout_s is not None:
            assert spec.web.websocket_idle_timeout_s <= spec.timeout_s
            assert float(spec.environment["WS_MAX_CONNECTION_S"]) < spec.timeout_s


def test_every_route_of_the_table_is_served_by_exactly_one_http_function() -> None:
    from app.api import all_routes

    table = Counter(_key(r.method, r.path) for r in all_routes())
    assert all(count == 1 for count in table.values()), "a route is declared twice in the table"
    served: Counter[tuple[str, str]] = Counter()
    for spec in _manifest().functions.values():
        if spec.web:
            assert not spec.http, f"{spec.name} is a web function: it serves no route table"
            continue
        routes_of = getattr(handler(spec.name), "routes", None)
        if routes_of is None:
            assert not spec.http, f"{spec.name} has a Function URL but serves no HTTP"
            continue
        assert spec.http, f"{spec.name} serves HTTP routes but has no Function URL"
        for route in routes_of:
            key = _key(route.method, route.path)
            assert key in table, f"{spec.name} serves {key}, which no route module declares"
            served[key] += 1
    for key in table:
        assert served[key] == 1, f"route {key} is served by {served[key]} functions"


def test_every_route_of_the_contract_reaches_its_function_through_the_domain() -> None:
    """The path mapping the local cloud serves and the deployer writes: every route of
    API.md that the code has built reaches the one function that serves it, the more
    specific pattern winning, and an unknown path reaches the catch-all."""
    contract = list(route_table())
    loaded = _manifest()
    handlers = {spec.name: handler(spec.name) for spec in loaded.http_functions}
    mappings = routes.mapping_of_handlers(handlers, loaded.web_paths)
    serving = {
        _key(route.method, route.path): name
        for name, found in handlers.items()
        for route in found.routes
    }
    assert len(contract) > 20
    built = [key for key in contract if key in serving]
    assert len(built) >= 20, "most of the contract's routes are built"
    for method, path in built:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        assert routes.resolve(mappings, concrete) == serving[(method, path)], (method, path)
    assert routes.resolve(mappings, "/ws") == "ws"
    assert routes.resolve(mappings, "/no/such/path") == "fallback"
    assert [m.function for m in mappings].count("fallback") == 1


def test_timers_are_7_field_crons_of_declared_functions() -> None:
    for timer in _manifest().timers:
        assert len(timer.cron.split()) == 7, f"{timer.cron!r} is not a 7-field SCF cron"


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
    from app.db.tables import RETIRED_COLUMNS, metadata

    def current(item: Any, name: str | None, kind: str, reflected: bool, _: Any) -> bool:
        # A retired column is in the schema for the release before, in no table definition.
        retired = RETIRED_COLUMNS.get(getattr(getattr(item, "table", None), "name", ""), ())
        return not (kind == "column" and reflected and name in retired)

    with get_engine().connect() as conn:
        options = {"compare_type": True, "include_object": current}
        context = MigrationContext.configure(conn, opts=options)
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
