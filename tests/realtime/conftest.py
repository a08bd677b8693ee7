"""Realtime tests: the local cloud serving /ws with the `ws` web function's own app, real
WebSocket clients (the `websockets` library), users with live sessions, pipelines that end
quickly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.functions import ROOT
from tests.support.local_cloud import local_cloud
from tests.support.pipelines import new_pipeline, token_for
from tests.support.quota import new_user

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def cloud(redis_db: Any) -> Iterator[Any]:
    with local_cloud((ROOT / "serverless.yml",), timers=False, queue_backoff_s=0.05) as running:
        yield running


@pytest.fixture
def fresh_redis(clean_redis: Any) -> Any:
    """Each test starts with no streams, positions or presence."""
    return clean_redis


def ws_url(cloud: Any, token: str) -> str:
    return f"ws://{cloud.host}:{cloud.port}/ws?token={token}"


@dataclass
class Client:
    """One WebSocket connection to /ws, speaking the contract's JSON messages."""

    socket: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    def next(self, timeout: float = 10) -> dict[str, Any]:
        message = json.loads(self.socket.recv(timeout=timeout))
        self.received.append(message)
        return dict(message)

    def silent_for(self, seconds: float) -> bool:
        """Nothing arrives for `seconds`."""
        try:
            extra = self.socket.recv(timeout=seconds)
        except TimeoutError:
            return True
        self.received.append(json.loads(extra))
        return False

    def updates(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        found = [self.next(timeout) for _ in range(count)]
        assert all(m["type"] == "task.updated" for m in found), found
        return found

    def until_ended(self, task_id: str, timeout: float = 20) -> list[dict[str, Any]]:
        """Every update of `task_id` up to the one that ends it."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(deadline - time.monotonic(), 0.01))
            if message["type"] == "task.updated" and message["data"]["id"] == task_id:
                seen.append(message)
                if message["data"]["status"] in ENDED:
                    return seen

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(json.dumps(message))

    def ack(self, message_id: str) -> None:
        self.send({"type": "ack", "id": message_id})

    def ping(self) -> dict[str, Any]:
        """Ping; the first message that is not a task update (the pong)."""
        self.send({"type": "ping"})
        while True:
            message = self.next()
            if message["type"] != "task.updated":
                return message

    def close(self) -> None:
        self.socket.close()

    def close_code(self, timeout: float = 10) -> int | None:
        """Wait for the server to close; its close code."""
        try:
            while True:
                self.socket.recv(timeout=timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def open_client(cloud: Any, token: str) -> Client:
    return Client(connect(ws_url(cloud, token), open_timeout=10, close_timeout=5))


@dataclass
class User:
    id: str
    token: str

    @classmethod
    def new(cls, quota: int = 5) -> User:
        user_id = new_user(quota)
        return cls(user_id, token_for(user_id))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create(self, cloud: Any, steps: list[dict[str, Any]] | None = None) -> str:
        reply = requests.post(
            f"{cloud.url}/tasks",
            json={"pipeline_id": new_pipeline(steps or QUICK), "input": {}},
            headers=self.headers(),
            timeout=10,
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def task(self, cloud: Any, task_id: str) -> dict[str, Any]:
        reply = requests.get(f"{cloud.url}/tasks/{task_id}", headers=self.headers(), timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def wait(self, cloud: Any, task_id: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(cloud, task_id)
            if task["status"] in ENDED:
                return task
            assert time.monotonic() < deadline, task
            time.sleep(0.02)
