"""The local cloud as one object: `LocalCloud(configs).start()` in tests, `run_forever()`
behind `python -m infra.local`.

Start order: bind the port (so the reverse-push URL is known), fill in the embedded
default (WS_PUSH_URL, and moto's S3 app for COS when COS_ENDPOINT is unset), run the
migrations, open DB_POOL_MIN connections and start the pool monitor, load every function as
SCF would, subscribe the queue functions, start the timers, then serve HTTP and WebSocket
with uvicorn. Functions run on a thread pool, so many requests run at once, unlike SCF
where an instance handles one: the pool settings of this process are the seed's 10/100.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.config import get_settings
from app.observability import logging as applog
from app.queue.local import Broker, broker
from infra.local import manifest as manifest_module
from infra.local.functions import MainHandler, load_handler
from infra.local.manifest import ManifestError, TimerSpec, WebSocketApi
from infra.local.queues import consumer
from infra.local.timers import TimerScheduler, next_times, now, timer_event

log = logging.getLogger("infra.local")
T = TypeVar("T")


def configs_from_env() -> list[Path]:
    """LOCAL_CLOUD_CONFIGS (paths separated by os.pathsep) or the repository's two files."""
    raw = os.environ.get("LOCAL_CLOUD_CONFIGS", "")
    paths = [Path(p) for p in raw.split(os.pathsep) if p.strip()]
    return paths or list(manifest_module.DEFAULT_CONFIGS)


def _broken(name: str, error: Exception) -> MainHandler:
    """Stands in for a function whose index.py does not import: every call fails, the
    others keep serving (an SCF function failing its init does not stop the rest)."""

    def main_handler(event: Any, context: Any) -> Any:
        raise RuntimeError(f"function {name} failed to load: {type(error).__name__}: {error}")

    return main_handler


class _RefusalIsNotAnError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


class LocalCloud:
    def __init__(
        self,
        configs: Iterable[Path | str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        http_workers: int = 64,
        queue_workers: int = 8,
        queue_max_attempts: int = 5,
        queue_backoff_s: float = 0.5,
        timers: bool = True,
    ) -> None:
        self.configs = [Path(p) for p in configs] if configs is not None else configs_from_env()
        self.manifest = manifest_module.load(self.configs)
        self.host = host
        self.port = get_settings().port if port is None else port
        self.http_workers = http_workers
        self.queue_workers = queue_workers
        self.queue_max_attempts = queue_max_attempts
        self.queue_backoff_s = queue_backoff_s
        self.timers_enabled = timers
        self.handlers: dict[str, MainHandler] = {}
        self.websockets: dict[str, WebSocketApi] = {}
        self.broker: Broker = broker()
        self.cos: Any = None
        self._socket: socket.socket | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._scheduler: TimerScheduler | None = None
        self._monitor: Any = None
        self._env_set: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def push_url(self) -> str:
        return f"{self.url}/_local/ws/push"

    # -- invoking functions -----------------------------------------------------------------

    def invoke(self, function: str, event: dict[str, Any], request_id: str | None = None) -> Any:
        """Call a function's main_handler with an event and an SCF-like context dict."""
        handler = self.handlers[function]
        request_id = request_id or secrets.token_hex(16)
        context = {
            "request_id": request_id,
            "function_name": function,
            "function_version": "$LATEST",
            "namespace": "default",
            "memory_limit_in_mb": 256,
            "time_limit_in_ms": 10000,
            "tencentcloud_region": get_settings().tencentcloud_region,
        }
        try:
            return handler(event, context)
        except Exception:
            log.exception(
                "function failed",
                extra={"fields": {"function": function, "request_id": request_id}},
            )
            raise

    async def call(self, function: str, event: dict[str, Any], request_id: str) -> Any:
        return await self.run_in_pool(self.invoke, function, event, request_id)

    async def run_in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def fire_timer(self, function: str, trigger: str | None = None) -> Any:
        """Fire one timer trigger of `function` now (the first one unless `trigger` names
        another) and return what the function returned."""
        timers = [t for t in self.manifest.timers if t.function == function]
        if trigger:
            timers = [t for t in timers if t.name == trigger]
        if not timers:
            named = f" {trigger}" if trigger else ""
            raise KeyError(f"no timer trigger{named} for function {function}")
        return self.invoke(function, timer_event(timers[0], now()))

    def _fire_scheduled(self, timer: TimerSpec, at: Any) -> None:
        # A failure is logged by invoke; the next tick still comes.
        with contextlib.suppress(Exception):
            self.invoke(timer.function, timer_event(timer, at))

    # -- start and stop ---------------------------------------------------------------------

    def _set_env(self, name: str, value: str) -> None:
        if not os.environ.get(name):
            os.environ[name] = value
            self._env_set.append(name)

    def _bind(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._socket = sock
        self.port = sock.getsockname()[1]

    def _embedded_default(self) -> None:
        self._set_env("WS_PUSH_URL", self.push_url)
        if not os.environ.get("COS_ENDPOINT"):
            from infra.local.embedded import EmbeddedCos

            self.cos = EmbeddedCos(self.host).start()
            self._set_env("COS_ENDPOINT", self.cos.endpoint)
        get_settings.cache_clear()  # the settings object must see what was just filled in
        settings = get_settings()
        if self.cos is not None:
            self.cos.create_bucket(settings.cos_bucket)

    def _database(self) -> None:
        from app.db import migrate
        from app.db.engine import get_engine
        from app.db.pool import PoolMonitor, warm

        settings = get_settings()
        engine = get_engine()
        migrate.upgrade(engine)
        warm(engine, min(settings.db_pool_min, settings.db_pool_max))
        self._monitor = PoolMonitor(engine, settings.db_pool_min, settings.db_pool_idle_timeout_s)
        self._monitor.start()

    def _functions(self) -> None:
        missing = self.manifest.check()
        for timer in self.manifest.timers:
            try:
                next_times(timer.cron, now())
            except (ValueError, KeyError) as error:
                missing.append(f"timer {timer.name}: {error}")
        if missing:
            raise ManifestError("; ".join(missing))
        for name, spec in self.manifest.functions.items():
            try:
                self.handlers[name] = load_handler(name, spec.directory, spec.handler)
            except Exception as error:  # one broken function, as on SCF
                log.exception("function failed to load", extra={"fields": {"function": name}})
                self.handlers[name] = _broken(name, error)
        for path, api in self.manifest.websockets.items():
            names = [n for n in (api.register, api.transport, api.cleanup) if n]
            absent = [n for n in names if n not in self.handlers]
            if absent:
                log.warning(
                    "websocket api disabled: functions not declared",
                    extra={"fields": {"path": path, "functions": absent}},
                )
                continue
            self.websockets[path] = api

    def _queues(self) -> None:
        self.broker.workers = self.queue_workers
        self.broker.max_attempts = self.queue_max_attempts
        self.broker.backoff_s = self.queue_backoff_s
        for spec in self.manifest.queues:
            self.broker.subscribe(spec.queue, spec.function, consumer(spec, self.invoke))

    def _server_config(self) -> Any:
        import uvicorn

        from infra.local.gateway import Gateway

        # uvicorn's sans-io WebSocket protocol logs a refused handshake (an HTTP denial
        # response, which is how register refuses) as an error; it is the expected answer.
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _RefusalIsNotAnError) for f in uvicorn_log.filters):
            uvicorn_log.addFilter(_RefusalIsNotAnError())

        config = uvicorn.Config(
            Gateway(self),
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            timeout_graceful_shutdown=3,
        )
        return uvicorn.Server(config)

    def start(self) -> LocalCloud:
        """Start everything and return once HTTP answers on `self.url`."""
        self._bind()
        try:
            self._embedded_default()
            applog.configure(get_settings().log_level)
            self._database()
            self._functions()
            self._executor = ThreadPoolExecutor(self.http_workers, thread_name_prefix="local-fn")
            self._queues()
            scheduled = [t for t in self.manifest.timers if t.enabled]
            if self.timers_enabled and scheduled:
                self._scheduler = TimerScheduler(
                    scheduled, self._fire_scheduled, self._executor.submit
                )
                self._scheduler.start()
            self._server = self._server_config()
            self._thread = threading.Thread(
                target=self._server.run, kwargs={"sockets": [self._socket]}, name="local-http"
            )
            self._thread.start()
            deadline = time.monotonic() + 30
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the local cloud's HTTP server did not start")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        for spec in self.manifest.queues:
            self.broker.unsubscribe(spec.queue, spec.function)
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        if self.cos is not None:
            self.cos.stop()
            self.cos = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for name in self._env_set:
            os.environ.pop(name, None)
        if self._env_set:
            self._env_set = []
            get_settings.cache_clear()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> str:
        ws = ", ".join(f"websocket {p}" for p in self.websockets) or "no websocket"
        return (
            f"{len(self.manifest.routes)} routes, {len(self.manifest.timers)} timers, "
            f"{len(self.manifest.queues)} queue subscriptions, {ws}"
        )

    def run_forever(self) -> None:
        """Serve until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly."""
        stopping = threading.Event()

        def _stop(signum: int, frame: Any) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        self.start()
        print(f"local cloud ready: {self.url} ({self.summary()})", flush=True)
        try:
            while not stopping.wait(1.0):
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError("the local cloud's HTTP server stopped")
        finally:
            self.stop()
