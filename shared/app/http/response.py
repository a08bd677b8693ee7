"""What a route may return besides a model or a dict: a Response with its own status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class Response:
    status: int = 200
    body: str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, dump_json(value), dict(headers or {}), JSON_CONTENT_TYPE)

    @classmethod
    def text(
        cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        return cls(status, text, {}, content_type)

    def without_content(self) -> Response:
        """The answer to a HEAD: this one's status and headers, with no body and the
        Content-Length of the body it leaves out (RFC 9110 9.3.2, 8.6); none on a 204,
        which may not carry one."""
        headers = dict(self.headers)
        if self.status != 204:
            body = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
            headers["Content-Length"] = str(len(body))
        return Response(self.status, b"", headers, self.content_type)
