"""The local cloud as one object: `LocalCloud(configs).start()` in tests, `run_forever()`
behind `python -m infra.local`.

Start order: bind the port, fill in the embedded default (moto's S3 app for COS when
COS_ENDPOINT is unset; with APP_ENV=local the payment sandbox for each channel not
configured, infra.local.sandbox), run the migrations (and, for the sandbox, a plan to
buy), open DB_POOL_MIN connections and start the pool monitor, load every function as
SCF would, derive the custom domain's path mapping from the routes the HTTP functions serve and the
web functions' paths (infra.routes), subscribe the asynchronously invoked
functions to their queues, start the timers, then serve HTTP with uvicorn. Functions run on
a thread pool, so many requests run at once, unlike SCF where an instance handles one: the
pool settings of this process are the seed's 10/100. Asynchronous invocations run
`async_concurrency` at once (LOCAL_ASYNC_CONCURRENCY, default 32), as that many instances of
the worker would. A web function's ASGI app (`/ws`) runs on the server's event loop, each
connection as SCF's one instance per connection would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
from app.events.websocket import CLIENT_MESSAGE_MAX_BYTES
from app.observability import logging as applog
from app.queue.local import Broker, LocalBackend, broker
from infra import manifest as manifest_module
from infra import routes
from infra.functions import MainHandler, load_handler
from infra.local.gateway import Gateway
from infra.local.queues import consumer
from infra.local.timers import TimerScheduler, next_times, now, timer_event
from infra.manifest import Manifest, ManifestError, TimerSpec

log = logging.getLogger("infra.local")
T = TypeVar("T")


class PortTaken(OSError):
    """The port to serve on is held by another process: what to do instead, in one line."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} is taken: run on another port with PORT (PORT=0: any free one)"
        )


def configs_from_env() -> list[Path]:
    """LOCAL_CLOUD_CONFIGS (paths separated by os.pathsep) or the repository's serverless.yml."""
    raw = os.environ.get("LOCAL_CLOUD_CONFIGS", "")
    paths = [Path(p) for p in raw.split(os.pathsep) if p.strip()]
    return paths or [manifest_module.DEFAULT_CONFIG]


def load_manifests(paths: Iterable[Path]) -> Manifest:
    """The files' functions together (a later file's function replaces an earlier one of
    the same name): how tests serve their probes beside the real functions."""
    merged: Manifest | None = None
    for path in paths:
        loaded = manifest_module.load(path)
        if merged is None:
            merged = loaded
        else:
            merged.functions.update(loaded.functions)
    if merged is None:
        raise ManifestError("no serverless.yml to serve")
    return merged


def _broken(name: str, error: Exception) -> MainHandler:
    """Stands in for a function whose index.py does not import: every call fails, the
    others keep serving (an SCF function failing its init does not stop the rest)."""

    # Called as an event function's handler (event, context) or as a web function's ASGI
    # app (scope, receive, send): either way the call says why, not how it was called.
    def stand_in(*call: Any) -> Any:
        raise RuntimeError(f"function {name} failed to load: {type(error).__name__}: {error}")

    return stand_in


SANDBOX_PLAN = "sandbox-month"


def _sandbox_plan() -> None:
    """A plan to buy from the payment sandbox, made when the database has none."""
    from app.db.tables import plans as plans_table
    from app.db.transaction import transaction
    from app.payments import plans

    with transaction() as tx:
        if tx.execute(plans_table.select().limit(1)).first() is not None:
            return
    fields = plans.PlanFields("Sandbox month", 990, 30, 100, True)
    plans.save(SANDBOX_PLAN, fields, actor=None)  # a seed, no admin's change


class LocalCloud:
    def __init__(
        self,
        configs: Iterable[Path | str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        http_workers: int = 64,
        async_concurrency: int | None = None,
        queue_max_attempts: int = 5,
        queue_backoff_s: float = 0.5,
        timers: bool = True,
    ) -> None:
        self.configs = [Path(p) for p in configs] if configs is not None else configs_from_env()
        self.manifest = load_manifests(self.configs)
        self.host = host
        self.port = get_settings().port if port is None else port
        self.http_workers = http_workers
        self.async_concurrency = async_concurrency or int(
            os.environ.get("LOCAL_ASYNC_CONCURRENCY") or 32
        )
        self.queue_max_attempts = queue_max_attempts
        self.queue_backoff_s = queue_backoff_s
        self.timers_enabled = timers
        self.handlers: dict[str, MainHandler] = {}
        self.mappings: list[routes.PathMapping] = []
        self.broker: Broker = broker()
        self.cos: Any = None
        self.payments: Any = None  # the payment sandbox (infra.local.sandbox), when it runs
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

    # -- invoking functions -----------------------------------------------------------------

    def invoke(self, function: str, event: Any, request_id: str | None = None) -> Any:
        """Call a function's main_handler with an event and an SCF-like context dict."""
        handler = self.handlers[function]
        request_id = request_id or secrets.token_hex(16)
        context = {
            "request_id": request_id,
            "function_name": function,
            "function_version": "$LATEST",
            "namespace": self.manifest.namespace,
            "memory_limit_in_mb": 256,
            # The function's own timeout, as SCF gives it: a job sizes its run by it.
            "time_limit_in_ms": self.manifest.functions[function].timeout_s * 1000,
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
        if function not in self.manifest.functions:
            raise KeyError(f"no function {function}")
        timers = [t for t in self.manifest.timers if t.function == function]
        if trigger:
            timers = [t for t in timers if t.name == trigger]
        if not timers:
            named = f" {trigger}" if trigger else ""
            raise KeyError(f"no timer trigger{named} for function {function}")
        return self.invoke(function, timer_event(timers[0], now()))

    def publish(self, function: str, message: Any, delay_s: float = 0) -> str:
        """Publish `message` for `function` as app.queue.publish does (refusing one over SCF's
        event limit). Only a function invoked asynchronously takes one: the broker would park
        any other's for a subscriber that never comes, and the publish would seem to work."""
        spec = self.manifest.functions.get(function)
        if spec is None or spec.asynchronous is None:
            raise KeyError(f"no asynchronous function {function} (serverless.yml `async:`)")
        return LocalBackend().publish(function, message, delay_s=delay_s)

    def server_sockets(self) -> list[Any]:
        """The sockets of the connections the HTTP server holds open (tests read their
        options)."""
        if self._server is None:
            return []
        connections = list(self._server.server_state.connections)
        found = [getattr(c, "transport", None) for c in connections]
        return [t.get_extra_info("socket") for t in found if t is not None]

    def queue_idle(self, timeout: float) -> dict[str, Any]:
        """Wait until every due message has been handled; the broker's counts."""
        idle = self.broker.wait_idle(timeout)
        return {"idle": idle, **self.broker.stats()}

    def web_app(self, function: str) -> Any:
        """The ASGI app of a web function (what its `scf_bootstrap` serves), else None."""
        spec = self.manifest.functions.get(function)
        return self.handlers.get(function) if spec is not None and spec.web else None

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
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only
        # for a socket that says it is TCP; without it every keep-alive answer after the first
        # waits ~40 ms for Nagle and the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            if error.errno == errno.EADDRINUSE:
                raise PortTaken(self.host, self.port) from None
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]

    def _embedded_default(self) -> None:
        if not os.environ.get("COS_ENDPOINT"):
            from infra.local.embedded import EmbeddedCos

            self.cos = EmbeddedCos(self.host).start()
            self._set_env("COS_ENDPOINT", self.cos.endpoint)
            # The COS SDK signs every request; the embedded store reads no signature.
            self._set_env("TENCENTCLOUD_SECRET_ID", "local")
            self._set_env("TENCENTCLOUD_SECRET_KEY", "local")
        if os.environ.get("APP_ENV", "local") == "local":
            from infra.local.sandbox.server import PaymentSandbox

            self.payments = PaymentSandbox(os.environ, self.url, self.host)
            for name, value in self.payments.env.items():
                self._set_env(name, value)
        get_settings.cache_clear()  # the settings object must see what was just filled in
        settings = get_settings()
        if self.cos is not None:
            self.cos.create_bucket(settings.cos_bucket)

    def _database(self) -> None:
        from app.db import migrate
        from app.db.engine import get_engine
        from app.db.pool import PoolMonitor, warm

        settings = get_settings()
        migrate.upgrade()  # on an engine of its own: an ALTER of a restored dump may take long
        engine = get_engine()
        warm(engine, min(settings.db_pool_min, settings.db_pool_max))
        if self.payments is not None and self.payments.servers:
            _sandbox_plan()
        self._monitor = PoolMonitor(engine, settings.db_pool_min, settings.db_pool_idle_timeout_s)
        self._monitor.start()

    def _functions(self) -> None:
        missing = []
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
        self.mappings = routes.mapping_of_handlers(
            {
                spec.name: self.handlers[spec.name]
                for spec in self.manifest.http_functions
                if hasattr(self.handlers[spec.name], "routes")
            },
            self.manifest.web_paths,
        )

    def _queues(self) -> None:
        self.broker.max_attempts = self.queue_max_attempts
        self.broker.backoff_s = self.queue_backoff_s
        for spec in self.manifest.functions.values():
            if spec.asynchronous is not None:
                self.broker.subscribe(
                    spec.name,
                    spec.name,
                    consumer(spec.name, self.invoke),
                    concurrency=self.async_concurrency,
                )

    def _server_config(self) -> Any:
        import uvicorn

        # Imported here, as uvicorn is: only a serving cloud loads it.
        from app.events.websocket_flow import FlowControlledWebSocket

        config = uvicorn.Config(
            Gateway(self, self.mappings),
            lifespan="off",
            log_config=None,
            access_log=False,
            # The client is the socket's peer: X-Forwarded-For is a header anyone can send
            # (uvicorn would believe it from 127.0.0.1, which every local client is).
            proxy_headers=False,
            ws=FlowControlledWebSocket,  # /ws, as scf_bootstrap serves it on SCF
            ws_max_size=CLIENT_MESSAGE_MAX_BYTES,
            # uvicorn's own INFO lines name each WebSocket's path with its query string,
            # the access token included: warnings only, as scf_bootstrap runs it.
            log_level="warning",
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
        for spec in self.manifest.functions.values():
            if spec.asynchronous is not None:
                self.broker.unsubscribe(spec.name, spec.name)
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        if self.cos is not None:
            self.cos.stop()
            self.cos = None
        if self.payments is not None:
            self.payments.stop()
            self.payments = None
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
        asynchronous = [s.name for s in self.manifest.functions.values() if s.asynchronous]
        return (
            f"{len(self.mappings)} paths, {len(self.manifest.timers)} timers, "
            f"{len(asynchronous)} asynchronous functions ({self.async_concurrency} at once)"
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
