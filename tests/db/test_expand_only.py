"""Migrations only expand the schema: `db-migrate` runs before the functions change (README,
"Deploying"), so the release before keeps serving on the migrated schema for the rest of the
deploy, and again after a rollback to it. A column or table it names is never dropped or
renamed by the migration of the release that stops naming it, only by a later deploy's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sqlalchemy import text

from app.clock import utcnow
from app.db.engine import get_engine
from app.ids import new_id

VERSIONS = Path(__file__).parents[2] / "shared" / "app" / "db" / "migrations" / "versions"
# Operations that take away what code of the release before may name.
_CONTRACTING = {"drop_column", "drop_table", "drop_constraint", "rename_table"}
_CONTRACTING_SQL = re.compile(r"\b(DROP|RENAME)\b", re.IGNORECASE)


def _contractions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    upgrade = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    found = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        if name in _CONTRACTING:
            found.append(name)
        elif name == "alter_column" and any(k.arg == "new_column_name" for k in node.keywords):
            found.append("alter_column(new_column_name=...)")
        elif name == "execute" and any(
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
            and _CONTRACTING_SQL.search(arg.value)
            for arg in node.args
        ):
            found.append("execute(DROP/RENAME ...)")
    return found


def test_no_migration_drops_or_renames_what_the_release_before_names() -> None:
    migrations = sorted(VERSIONS.glob("*.py"))
    assert migrations, VERSIONS
    found = {path.name: ops for path in migrations if (ops := _contractions(path))}
    assert found == {}


def test_the_release_before_still_records_idempotency_keys_on_the_migrated_schema() -> None:
    # Its claim, as it was written before the key kept no status (38e4fe7^): status_code
    # named, 0 until the answer is recorded; then the answer recorded and read back.
    now = utcnow().replace(tzinfo=None)
    key = {"user": new_id(), "key": new_id()}
    where = " WHERE user_id = :user AND scope = 'tasks' AND `key` = :key"
    with get_engine().begin() as conn:
        claimed = conn.execute(
            text(
                "INSERT IGNORE INTO idempotency_keys (user_id, scope, `key`, request_hash,"
                " status_code, response, created_at, expires_at)"
                " VALUES (:user, 'tasks', :key, 'h', 0, '{}', :now, :now)"
            ),
            {**key, "now": now},
        )
        assert claimed.rowcount == 1  # 0 would have been KeyTaken
        recorded = conn.execute(
            text("UPDATE idempotency_keys SET status_code = 201, response = '{\"id\": 1}'" + where),
            key,
        )
        assert recorded.rowcount == 1
        status = conn.execute(text("SELECT status_code FROM idempotency_keys" + where), key)
        assert status.scalar_one() == 201
