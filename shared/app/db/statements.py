"""Statements written the same way on MySQL/MariaDB and SQLite."""

from __future__ import annotations

from sqlalchemy.sql.dml import Insert


def ignoring_duplicates(statement: Insert) -> Insert:
    """`INSERT IGNORE` (MySQL, MariaDB) or `INSERT OR IGNORE` (SQLite): a row whose key is
    already taken is skipped, not an error; the result's rowcount says which."""
    return (
        statement.prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
        .prefix_with("OR IGNORE", dialect="sqlite")
    )
