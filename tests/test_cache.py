"""The cache service against real Redis: hits, misses, TTLs, remembered misses,
invalidation, stampedes across threads, and Redis outages that never reach the caller."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis as redis_lib

from app import cache
from app.cache import LOCK_PREFIX, Cache, lock_key, redis_key
from app.redis_client import build_redis
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import redis_down


class Loader:
    """A loader that counts its calls, optionally slowly."""

    def __init__(self, value: Any, delay_s: float = 0.0) -> None:
        self.value = value
        self.delay_s = delay_s
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.value


@pytest.fixture
def r(clean_redis: Any) -> Any:
    return clean_redis


# -- hits, misses, TTLs ---------------------------------------------------------------


def test_miss_loads_and_stores_then_hit_does_not_load(r: Any) -> None:
    load = Loader({"id": "u1", "quota": {"balance": 3}})
    assert cache.get_or_set("user:u1", load, 3600) == {"id": "u1", "quota": {"balance": 3}}
    assert cache.get_or_set("user:u1", load, 3600) == {"id": "u1", "quota": {"balance": 3}}
    assert load.calls == 1
    assert json.loads(r.get("cache:user:u1")) == {"id": "u1", "quota": {"balance": 3}}
    assert 3_590_000 < r.pttl("cache:user:u1") <= 3_600_000
    assert not r.exists(lock_key("user:u1"))


def test_keys_are_namespaced(r: Any) -> None:
    cache.get_or_set("plans", Loader([1]), 60)
    assert redis_key("plans") == "cache:plans"
    assert r.exists("cache:plans") and not r.exists("plans")
    # The lock's hash tag is the value's name: one cluster slot for both.
    assert lock_key("plans") == "cache-lock:{cache:plans}"


def test_a_key_with_braces_is_refused(r: Any) -> None:
    # Its value's name would carry a hash tag other than the lock's.
    with pytest.raises(ValueError, match="hash tag"):
        cache.get_or_set("user:{u1}", Loader(1), 60)
    with pytest.raises(ValueError, match="hash tag"):
        cache.invalidate("a}b")


def test_value_expires_after_its_ttl(r: Any) -> None:
    load = Loader("v")
    cache.get_or_set("short", load, 0.15)
    time.sleep(0.3)
    assert r.get("cache:short") is None
    assert cache.get_or_set("short", load, 0.15) == "v"
    assert load.calls == 2


def test_hit_and_miss_return_the_same_json_shape(r: Any) -> None:
    load = Loader({"pair": (1, 2), 3: "three"})
    first = cache.get_or_set("shape", load, 60)
    second = cache.get_or_set("shape", load, 60)
    assert first == second == {"pair": [1, 2], "3": "three"}


@pytest.mark.parametrize("value", [0, "", [], {}, False])
def test_falsy_values_are_cached_like_any_other(r: Any, value: Any) -> None:
    load = Loader(value)
    assert cache.get_or_set("falsy", load, 60) == value
    assert cache.get_or_set("falsy", load, 60) == value
    assert load.calls == 1


def test_ttl_must_be_positive(r: Any) -> None:
    with pytest.raises(ValueError):
        cache.get_or_set("k", Loader(1), 0)


def test_unreadable_stored_value_is_reloaded_and_replaced(r: Any) -> None:
    r.set("cache:broken", "{not json")
    load = Loader({"ok": True})
    with capture_logs() as logs:
        assert cache.get_or_set("broken", load, 60) == {"ok": True}
    assert load.calls == 1
    assert json.loads(r.get("cache:broken")) == {"ok": True}
    assert logs.where(message="cache value unreadable", key="broken")


# -- misses remembered ------------------------------------------------------------------


def test_a_miss_is_remembered_for_the_negative_ttl(r: Any) -> None:
    load = Loader(None)
    assert cache.get_or_set("user:ghost", load, 3600, negative_ttl_s=0.2) is None
    assert cache.get_or_set("user:ghost", load, 3600, negative_ttl_s=0.2) is None
    assert load.calls == 1
    assert 0 < r.pttl("cache:user:ghost") <= 200
    time.sleep(0.3)
    assert cache.get_or_set("user:ghost", load, 3600, negative_ttl_s=0.2) is None
    assert load.calls == 2


def test_default_negative_ttl_is_a_minute(r: Any) -> None:
    cache.get_or_set("ghost", Loader(None), 3600)
    assert 55_000 < r.pttl("cache:ghost") <= 60_000


def test_negative_ttl_zero_remembers_nothing(r: Any) -> None:
    load = Loader(None)
    cache.get_or_set("ghost", load, 60, negative_ttl_s=0)
    cache.get_or_set("ghost", load, 60, negative_ttl_s=0)
    assert load.calls == 2
    assert not r.exists("cache:ghost") and not r.exists(lock_key("ghost"))


# -- failures of the loader ------------------------------------------------------------


def test_loader_exception_reaches_the_caller_and_stores_nothing(r: Any) -> None:
    def failing() -> Any:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        cache.get_or_set("k", failing, 60)
    assert not r.exists("cache:k")
    # The lock went with the failure: the next caller loads at once, without waiting.
    assert not r.exists(lock_key("k"))
    assert cache.get_or_set("k", Loader(5), 60) == 5


def test_value_json_cannot_encode_is_a_type_error(r: Any) -> None:
    with pytest.raises(TypeError):
        cache.get_or_set("k", Loader({"when": object()}), 60)
    assert not r.exists("cache:k") and not r.exists(lock_key("k"))


# -- invalidation ------------------------------------------------------------------------


def test_invalidate_drops_values_and_the_next_read_loads(r: Any) -> None:
    load = Loader("v1")
    cache.get_or_set("a", load, 60)
    cache.get_or_set("b", load, 60)
    assert cache.invalidate("a", "b", "never-cached") == 2
    assert cache.invalidate() == 0
    load.value = "v2"
    assert cache.get_or_set("a", load, 60) == "v2"
    assert load.calls == 3


def test_invalidate_drops_a_remembered_miss(r: Any) -> None:
    cache.get_or_set("user:new", Loader(None), 60)
    assert cache.invalidate("user:new") == 1
    assert cache.get_or_set("user:new", Loader({"id": "new"}), 60) == {"id": "new"}


def test_invalidate_pattern_scans_in_batches_and_spares_other_keys(r: Any) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(1200):
        pipe.set(f"cache:plans:{i}", "1")
    for i in range(50):
        pipe.set(f"cache:users:{i}", "1")
    pipe.set("plans:not-a-cache-key", "1")
    pipe.execute()
    before = r.info("commandstats")

    dropped = Cache(scan_batch=100).invalidate_pattern("plans:*")

    after = r.info("commandstats")
    assert dropped == 1200
    assert not list(r.scan_iter(match="cache:plans:*"))
    # A set: SCAN may return a key twice while Redis shrinks its table after the deletions.
    assert len(set(r.scan_iter(match="cache:users:*"))) == 50
    assert r.exists("plans:not-a-cache-key")
    scans = after["cmdstat_scan"]["calls"] - before.get("cmdstat_scan", {"calls": 0})["calls"]
    assert scans >= 1250 // 100  # many SCAN batches, not one sweep
    keys_calls = after.get("cmdstat_keys", {"calls": 0})["calls"]
    assert keys_calls == before.get("cmdstat_keys", {"calls": 0})["calls"]


def test_invalidate_pattern_with_the_default_instance(r: Any) -> None:
    for name in ("pipelines:list", "pipelines:p1", "plans:list"):
        cache.get_or_set(name, Loader(name), 60)
    assert cache.invalidate_pattern("pipelines:*") == 2
    assert cache.invalidate_pattern("pipelines:*") == 0
    assert r.exists("cache:plans:list")


def test_a_load_in_flight_during_an_invalidation_is_not_stored(r: Any) -> None:
    # A reader loads the old row; a writer commits and invalidates; the reader's result must
    # not become the cached value, or the change would stay hidden for the whole TTL.
    def stale_loader() -> str:
        assert cache.invalidate("user:u9") == 0  # the writer, mid-load
        return "old"

    assert cache.get_or_set("user:u9", stale_loader, 3600) == "old"
    assert not r.exists("cache:user:u9")
    assert cache.get_or_set("user:u9", Loader("new"), 3600) == "new"
    assert cache.get_or_set("user:u9", Loader("other"), 3600) == "new"


def test_a_load_in_flight_during_a_pattern_invalidation_is_not_stored(r: Any) -> None:
    def stale_loader() -> str:
        cache.invalidate_pattern("plans:*")
        return "old"

    assert cache.get_or_set("plans:list", stale_loader, 3600) == "old"
    assert not r.exists("cache:plans:list")


Client = TypeVar("Client", bound=redis_lib.Redis)


def beside(r: Any, kind: type[Client]) -> Client:
    """A client of `kind` (a real redis-py client with one behaviour changed) on the
    server and database `r` uses."""
    kwargs = r.connection_pool.connection_kwargs
    return kind(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"], decode_responses=True)


class LosesOneTrip(redis_lib.Redis):
    """A real client whose next round trip (a command or a pipeline), once `lose_next` is
    set, fails as a connection lost for that one trip; the trips after it go through."""

    lose_next = False

    def _trip(self) -> None:
        if self.lose_next:
            self.lose_next = False
            raise redis_lib.ConnectionError("lost for one round trip")

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self._trip()
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self._trip()
        return super().pipeline(transaction, shard_hint)


def test_a_held_change_stops_the_store_and_its_release_lets_the_next_load_store(
    r: Any,
) -> None:
    """A load that read before a held change's commit stores nothing once the change is
    released (its lock goes with the value and the hold), and the next load stores again:
    the hold is gone."""

    def loaded_before_the_commit() -> dict[str, int]:
        cache.release("user:u1", cache.hold("user:u1"))
        return {"id": 0}

    assert cache.get_or_set("user:u1", loaded_before_the_commit, 60) == {"id": 0}
    assert not r.exists(cache.redis_key("user:u1"))
    assert cache.get_or_set("user:u1", lambda: {"id": 1}, 60) == {"id": 1}
    assert cache.get_or_set("user:u1", lambda: {"id": 2}, 60) == {"id": 1}


def test_a_release_redis_takes_in_part_leaves_the_hold_standing(r: Any) -> None:
    """A held change commits while a load that read before it is in flight, and the first
    round trip of its release is lost. The release is one step, so the hold stands (until
    it runs out) and the load stores nothing: had the value's lock been dropped in one trip
    and the hold in the next, the hold would end with the load's lock still its own."""
    client = beside(r, LosesOneTrip)
    changer = Cache(client)

    def stale_loader() -> str:
        held = changer.hold("user:u8")  # the change, mid-load, commits
        client.lose_next = True
        with capture_logs() as logs:
            changer.release("user:u8", held)
        assert logs.where(message="cache unavailable", key="user:u8", level="error")
        return "old"

    try:
        assert cache.get_or_set("user:u8", stale_loader, 3600) == "old"
        assert not r.exists("cache:user:u8")
        assert cache.get_or_set("user:u8", Loader("new"), 3600) == "new"
        assert not r.exists("cache:user:u8")  # held still: read from the database
    finally:
        client.close()


# -- stampedes ---------------------------------------------------------------------------


def run_together(count: int, call: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_twenty_concurrent_misses_run_the_loader_once(r: Any) -> None:
    load = Loader({"plans": [1, 2, 3]}, delay_s=0.3)
    results = run_together(20, lambda: cache.get_or_set("plans:list", load, 60))
    assert load.calls == 1
    assert results == [{"plans": [1, 2, 3]}] * 20
    assert not r.exists(lock_key("plans:list"))


def test_twenty_concurrent_misses_of_a_missing_row_run_the_loader_once(r: Any) -> None:
    load = Loader(None, delay_s=0.3)
    results = run_together(20, lambda: cache.get_or_set("user:ghost", load, 60))
    assert load.calls == 1
    assert results == [None] * 20


def test_stampede_across_separate_clients(r: Any) -> None:
    # Each thread its own connection pool, as separate SCF instances would have.
    load = Loader("shared", delay_s=0.3)
    url = r.connection_pool.connection_kwargs
    clients = [
        redis_lib.Redis(host=url["host"], port=url["port"], db=url["db"], decode_responses=True)
        for _ in range(10)
    ]
    try:
        it = iter(clients)
        lock = threading.Lock()

        def call() -> Any:
            with lock:
                client = next(it)
            return Cache(client).get_or_set("cross", load, 60)

        assert run_together(10, call) == ["shared"] * 10
        assert load.calls == 1
    finally:
        for client in clients:
            client.close()


def test_waiters_load_themselves_when_the_holder_takes_too_long(r: Any) -> None:
    # A holder that died keeps its lock until the lock expires; callers do not wait for it.
    r.set(lock_key("stuck"), "someone-else", px=10_000)
    load = Loader("mine")
    assert Cache(wait_s=0.1).get_or_set("stuck", load, 60) == "mine"
    assert load.calls == 1
    # Not the holder: it does not store.
    assert not r.exists("cache:stuck")
    r.delete(lock_key("stuck"))
    Cache().get_or_set("stuck", load, 60)
    assert json.loads(r.get("cache:stuck")) == "mine"


def test_a_waiter_takes_over_when_the_holder_fails(r: Any) -> None:
    started = threading.Event()

    def failing() -> Any:
        started.set()
        time.sleep(0.2)
        raise RuntimeError("boom")

    holder_error: list[BaseException] = []

    def holder() -> None:
        try:
            cache.get_or_set("flaky", failing, 60)
        except RuntimeError as exc:
            holder_error.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    assert started.wait(5)
    load = Loader("recovered")
    assert cache.get_or_set("flaky", load, 60) == "recovered"
    thread.join(10)
    assert holder_error and load.calls == 1
    assert json.loads(r.get("cache:flaky")) == "recovered"


class RacingRedis(redis_lib.Redis):
    """A real client; its first lock attempt lets another process finish a load first."""

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            kwargs.get("nx")
            and str(name).startswith(LOCK_PREFIX)
            and not getattr(self, "_raced", False)
        ):
            self._raced = True
            other = redis_lib.Redis(connection_pool=self.connection_pool)
            # The lock's hash tag is the value's stored name.
            other.set(str(name)[len(LOCK_PREFIX) + 1 : -1], json.dumps("theirs"), ex=60)
        return super().set(name, value, *args, **kwargs)


def test_a_value_stored_between_miss_and_lock_is_used(r: Any) -> None:
    client = beside(r, RacingRedis)
    try:
        load = Loader("mine")
        assert Cache(client).get_or_set("race", load, 60) == "theirs"
        assert load.calls == 0
        assert not r.exists(lock_key("race"))
    finally:
        client.close()


# -- Redis outages -----------------------------------------------------------------------


def test_refused_connection_degrades_to_the_loader(r: Any) -> None:
    dead = Cache(build_redis(f"redis://127.0.0.1:{closed_port()}/0"))
    load = Loader({"id": "u1"})
    with capture_logs() as logs:
        assert dead.get_or_set("user:u1", load, 3600) == {"id": "u1"}
        assert dead.get_or_set("user:u1", load, 3600) == {"id": "u1"}
        assert dead.get_or_set("user:none", Loader(None), 3600) is None
        assert dead.invalidate("user:u1") == 0
        assert dead.invalidate_pattern("user:*") == 0
    assert load.calls == 2
    warnings = logs.where(message="cache unavailable", op="get")
    assert warnings and warnings[0]["level"] == "warning"
    assert warnings[0]["error"] == "ConnectionError"
    assert logs.where(message="cache unavailable", op="invalidate", level="error")
    assert logs.where(message="cache unavailable", op="invalidate_pattern", level="error")


def test_module_functions_degrade_when_redis_url_points_at_a_dead_port(r: Any) -> None:
    with redis_down():
        assert cache.get_or_set("k", Loader([1, 2]), 60) == [1, 2]
        assert cache.invalidate("k") == 0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: every command times out."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_timeouts_degrade_to_the_loader(silent_server: int) -> None:
    client = redis_lib.Redis(
        host="127.0.0.1",
        port=silent_server,
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=None,
    )
    load = Loader("from-db")
    with capture_logs() as logs:
        assert Cache(client).get_or_set("k", load, 60) == "from-db"
    assert load.calls == 1
    assert logs.where(message="cache unavailable", error="TimeoutError")


@pytest.fixture
def private_redis() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A Redis server of this test's own, so the test can stop it mid-call."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = closed_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis_lib.Redis(port=port)
        for _ in range(100):
            try:
                probe.ping()
                break
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        probe.close()
        yield proc, port
    finally:
        proc.kill()
        proc.wait(10)


def test_redis_dying_during_a_load_still_returns_the_value(
    private_redis: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = private_redis
    client = redis_lib.Redis(port=port, decode_responses=True, socket_timeout=1, retry=None)

    def loader_then_outage() -> dict[str, int]:
        proc.kill()
        proc.wait(10)
        return {"balance": 3}

    with capture_logs() as logs:
        assert Cache(client).get_or_set("user:u1", loader_then_outage, 60) == {"balance": 3}
    assert logs.where(message="cache unavailable", op="store")


def test_redis_dying_during_a_failing_load_raises_the_loader_error(
    private_redis: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = private_redis
    client = redis_lib.Redis(port=port, decode_responses=True, socket_timeout=1, retry=None)

    def failing_then_outage() -> Any:
        proc.kill()
        proc.wait(10)
        raise LookupError("row gone")

    with capture_logs() as logs, pytest.raises(LookupError):
        Cache(client).get_or_set("k", failing_then_outage, 60)
    assert logs.where(message="cache unavailable", op="unlock")


def test_the_embedded_default_fakeredis_runs_the_same_cache() -> None:
    # `make run` with no configuration caches in fakeredis; its Lua must run our scripts.
    memory = build_redis("memory://")
    memory.flushall()
    try:
        local = Cache(memory)
        load = Loader({"n": 1}, delay_s=0.2)
        assert run_together(5, lambda: local.get_or_set("plans:list", load, 60)) == [{"n": 1}] * 5
        assert load.calls == 1
        assert json.loads(memory.get("cache:plans:list")) == {"n": 1}
        assert local.get_or_set("ghost", Loader(None), 60) is None
        assert memory.get("cache:ghost") is not None
        assert local.invalidate_pattern("plans:*") == 1
        assert local.invalidate("ghost") == 1
    finally:
        memory.flushall()
