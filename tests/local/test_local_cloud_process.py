"""The local cloud as developers run it: `python -m infra.local` in its own process.

- With no configuration at all (a fresh directory, only PYTHONPATH and PORT): the embedded
  default serves /health, an offline Swagger UI and a valid OpenAPI document, and Ctrl-C
  stops it cleanly.
- Against MariaDB with DB_POOL_MAX=10: 100 requests at once all succeed and the database
  never sees more than 10 connections from it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.local_cloud import PYTHONPATH, embedded_default_env, local_cloud_process

pytestmark = pytest.mark.slow


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_a_start_with_no_configuration_serves_health_docs_and_openapi(tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    with local_cloud_process({"PYTHONPATH": PYTHONPATH, "PORT": "0"}, cwd=tmp_path) as cloud:
        health = cloud.get("/health")
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}

        docs = cloud.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["Content-Type"].startswith("text/html")
        parser = _Assets()
        parser.feed(docs.text)
        assert parser.urls, "the docs page loads no assets"
        for url in parser.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"external asset {url}"
            asset = requests.get(urljoin(cloud.url + "/docs", url), timeout=30)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url

        spec = cloud.get("/openapi.json")
        assert spec.status_code == 200
        validate(spec.json())

        assert (tmp_path / ".local" / "app.db").exists()
    assert cloud.process.returncode == 0, "".join(cloud.output[-20:])


def _processlist(server: Any, database: str) -> int:
    with server.connect() as conn:
        query = text("SELECT COUNT(*) FROM information_schema.processlist WHERE db = :db")
        return int(conn.execute(query, {"db": database}).scalar_one())


def test_100_concurrent_requests_against_mariadb_with_a_pool_of_10() -> None:
    # A database of its own, so the process list counts only the local cloud's connections.
    run_url = make_url(os.environ["DATABASE_URL"])
    database = f"{run_url.database}_pool"
    server = create_engine(run_url.set(database=""), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": "0",
        "APP_ENV": "test",
        "DATABASE_URL": run_url.set(database=database).render_as_string(hide_password=False),
        "REDIS_URL": os.environ["REDIS_URL"],
        "JWT_SECRET": os.environ["JWT_SECRET"],
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "10",
        "DB_POOL_ACQUIRE_TIMEOUT_S": "30",
        "LOG_LEVEL": "WARNING",
    }
    try:
        with local_cloud_process(env) as cloud:
            seen: list[int] = []
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    seen.append(_processlist(server, database))
                    sampling.wait(0.005)

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = threading.Barrier(100)
            statuses: list[int] = []

            def one() -> None:
                start.wait()
                statuses.append(requests.get(cloud.url + "/health", timeout=60).status_code)

            clients = [threading.Thread(target=one) for _ in range(100)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            sampling.set()
            sampler.join()
            metrics = cloud.get("/metrics").text
        assert statuses == [200] * 100
        assert seen and max(seen) <= 10, max(seen)
        assert max(seen) >= 2  # DB_POOL_MIN were opened ahead and the load used them
        peak = re.search(r"^db_pool_connections_peak (\S+)$", metrics, re.M)
        assert peak, metrics
        assert 1 <= float(peak.group(1)) <= 10
    finally:
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        server.dispose()


def test_a_port_already_taken_is_said_in_one_line_with_what_to_do(tmp_path: Path) -> None:
    # What a newcomer meets when another local cloud, or anything else, holds port 8000.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        ended = subprocess.run(
            [sys.executable, "-m", "infra.local"],
            cwd=tmp_path,
            env=embedded_default_env(tmp_path, PYTHONPATH=PYTHONPATH, PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert ended.returncode != 0
    assert "Traceback" not in ended.stderr, ended.stderr
    assert ended.stderr.strip().splitlines()[-1] == (
        f"local cloud: 127.0.0.1:{port} is taken: run on another port with PORT"
        " (PORT=0: any free one)"
    )
