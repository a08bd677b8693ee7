"""A real Redis Cluster for the test run: three `redis-server --cluster-enabled yes`
primaries on free ports, each in a temporary directory of its own, joined with
`redis-cli --cluster create`, stopped at the end. No replicas, no persistence."""

from __future__ import annotations

import random
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


def _ephemeral_floor() -> int:
    """The lowest port the kernel gives outgoing connections: a port at or above it, free
    a moment ago, can be taken by any test's client connection before the node binds it."""
    with suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def _free_ports(count: int) -> tuple[int, ...]:
    """Ports free a moment ago whose cluster bus ports are free too, both below the
    ephemeral range where it leaves room, so no client connection takes one meanwhile."""
    top = _ephemeral_floor() - _BUS_OFFSET
    ports: list[int] = []
    while len(ports) < count:
        if top - 5000 > 1024:
            port = random.randrange(top - 5000, top)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        bus = port + _BUS_OFFSET
        if bus < 65536 and port not in ports and _free(port) and _free(bus):
            ports.append(port)
    return tuple(ports)


class _NodeExited(Exception):
    """A node's process ended before it answered: another process took its port."""


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with suppress(redis_lib.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: waited {timeout_s} s for {what}")
        time.sleep(0.05)


def _answers(cluster: Cluster, port: int) -> bool:
    if cluster.processes[port].poll() is not None:
        raise _NodeExited(port)
    return cluster.info(port) is not None


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


def _start_nodes(server: str, nodes: int, tmp: Path, attempts: int = 3) -> Cluster:
    """`nodes` node processes, each answering on its port. A node that exits first lost
    its port to another process between the check and the bind: all start again on new
    ports. The caller stops the processes of the cluster it gets."""
    for attempt in range(1, attempts + 1):
        cluster = Cluster(_free_ports(nodes))
        for port in cluster.ports:
            home = tmp / f"{attempt}-{port}"
            home.mkdir()
            cluster.processes[port] = subprocess.Popen(
                _node_command(server, port, home),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            for port in cluster.ports:
                _wait(lambda c=cluster, p=port: _answers(c, p), f"node {port} to start")
        except _NodeExited:
            _stop(list(cluster.processes.values()))
            if attempt == attempts:
                raise
        except BaseException:
            _stop(list(cluster.processes.values()))
            raise
        else:
            return cluster
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def running_cluster(nodes: int = 3) -> Iterator[Cluster]:
    """A cluster of `nodes` primaries, each serving a third of the slots, ready
    (`cluster_state:ok` on every node); stopped and its files removed after. Skips the test
    when redis-server or redis-cli is not installed."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are not on PATH: the Redis Cluster tests need them")
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as tmp:
        cluster = _start_nodes(server, nodes, Path(tmp))
        try:
            create = [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in cluster.ports)]
            created = subprocess.run(
                [*create, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")
            for port in cluster.ports:
                _wait(
                    lambda port=port: cluster.info(port)["cluster_state"] == "ok",
                    f"node {port} to reach cluster_state:ok",
                )
            yield cluster
        finally:
            _stop(list(cluster.processes.values()))
