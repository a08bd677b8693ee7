"""What a simulator answers one HTTP request with, for whatever server serves it (the local
cloud's sandbox, the tests' fakes)."""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler


@dataclass(frozen=True)
class SimAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def write(self, handler: BaseHTTPRequestHandler) -> None:
        """Send this answer as `handler`'s response."""
        handler.send_response(self.status)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        handler.wfile.write(self.body)
