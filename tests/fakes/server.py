"""The life of every protocol fake: a threaded HTTP server on 127.0.0.1, any free port,
started by `with Fake() as fake:` and stopped after. Subclasses say how to answer."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

F = TypeVar("F", bound="LocalServer")


class LocalServer:
    _server: ThreadingHTTPServer | None = None
    # Set before start(): the server speaks HTTPS with this context.
    tls: ssl.SSLContext | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class, bound to this fake's state."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def start(self: F) -> F:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self._server.daemon_threads = True
        if self.tls is not None:
            # The handshake runs in each connection's thread, on its first read.
            self._server.socket = self.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: F) -> F:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
