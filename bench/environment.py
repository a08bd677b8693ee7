"""What an in-process bench runs on, set in the environment before anything imports
app.config: a database of its own on BENCH_DATABASE_SERVER (default
mysql+pymysql://root@127.0.0.1:3306), which the bench creates and drops with
`tests.support.database.migrated_database(SERVER, name)`, and Redis at BENCH_REDIS_URL
(default redis://127.0.0.1:6379/13; what benches write there expires)."""

from __future__ import annotations

import os
import secrets

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")


def prepare(bench: str, **more: str) -> str:
    """Point the settings at a fresh database for `bench` (and `more` variables); its name."""
    name = f"bench_{bench}_{secrets.token_hex(4)}"
    os.environ.update(
        {
            "APP_ENV": "test",
            "DATABASE_URL": f"{SERVER.rstrip('/')}/{name}",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
            "JWT_SECRET": secrets.token_urlsafe(64),
            "DB_POOL_MIN": "0",
            "DB_POOL_MAX": "4",
            "LOG_LEVEL": "WARNING",
            **more,
        }
    )
    return name
