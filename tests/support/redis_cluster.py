"""A real Redis Cluster for the test run: three `redis-server --cluster-enabled yes`
primaries on free ports, each in a temporary directory of its own, joined with
`redis-cli --cluster create`, stopped at the end. No replicas, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib

# A node's cluster bus listens on its port + 10000.
_BUS_OFFSET = 10000


@dataclass(frozen=True)
class Cluster:
    ports: tuple[int, ...]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """REDIS_URL of the app on this cluster (one node's address; the client finds the rest)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis_lib.Redis:
        return redis_lib.Redis(port=port, decode_responses=True, socket_timeout=5)

    def info(self, port: int) -> dict[str, str]:
        """CLUSTER INFO of one node."""
        with self.node(port) as node:
            info: dict[str, str] = node.cluster("info")
        return info

    def flush(self) -> None:
        for port in self.ports:
            with self.node(port) as node:
                node.flushall()

    def stop(self, port: int) -> None:
        """Stop one node, as a crash would (its slots go unserved)."""
        _stop([self.processes[port]])


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> tuple[int, ...]:
    """Ports free a moment ago whose cluster bus ports are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + _BUS_OFFSET < 65536 and port not in ports and _free(port + _BUS_OFFSET):
            ports.append(port)
    return tuple(ports)


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with suppress(redis_lib.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: waited {timeout_s} s for {what}")
        time.sleep(0.05)


def _node_command(server: str, port: int, home: Path) -> list[str]:
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "dir": str(home),
        "save": "",
        "appendonly": "no",
        "logfile": str(home / "redis.log"),
    }
    return [server, *(word for name, value in options.items() for word in (f"--{name}", value))]


@contextmanager
def running_cluster(nodes: int = 3) -> Iterator[Cluster]:
    """A cluster of `nodes` primaries, each serving a third of the slots, ready
    (`cluster_state:ok` on every node); stopped and its files removed after. Skips the test
    when redis-server or redis-cli is not installed."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are not on PATH: the Redis Cluster tests need them")
    ports = _free_ports(nodes)
    cluster = Cluster(ports)
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as tmp:
        try:
            for port in ports:
                home = Path(tmp) / str(port)
                home.mkdir()
                cluster.processes[port] = subprocess.Popen(
                    _node_command(server, port, home),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            for port in ports:
                _wait(lambda port=port: cluster.info(port) is not None, f"node {port} to start")
            create = [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports)]
            created = subprocess.run(
                [*create, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")
            for port in ports:
                _wait(
                    lambda port=port: cluster.info(port)["cluster_state"] == "ok",
                    f"node {port} to reach cluster_state:ok",
                )
            yield cluster
        finally:
            _stop(list(cluster.processes.values()))
