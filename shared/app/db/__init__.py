"""The database: one engine per instance, one transaction helper, table definitions."""

from app.db.engine import get_engine, transaction

__all__ = ["get_engine", "transaction"]
