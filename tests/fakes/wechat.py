"""A fake WeChat API (`GET /sns/jscode2session`): a real HTTP server on 127.0.0.1 with
scripted answers.

`fake.code("c1", openid="o1", unionid="u1")` makes login code c1 valid once (a second use is
40163, as WeChat answers); `fake.code("c2", errcode=40226)` scripts an error;
`fake.code("c3", openid="o3", busy=1)` answers -1 (system busy) that many times first;
`fake.code("c4", reply=[])` answers that JSON value as it is, whatever its shape. An
unknown code is 40029; a wrong appid or secret 40013 / 40125. Every request is recorded
in `fake.requests` (its query parameters).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.server import LocalServer


@dataclass
class _Script:
    openid: str | None = None
    unionid: str | None = None
    session_key: str = ""
    errcode: int = 0
    busy: int = 0
    used: bool = False
    reply: Any = None


class FakeWechat(LocalServer):
    def __init__(
        self, appid: str = "wx0123456789abcdef", secret: str = "fake-wechat-secret"
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.scripts: dict[str, _Script] = {}
        self.requests: list[dict[str, str]] = []
        self.session_keys: list[str] = []
        self._lock = threading.Lock()

    def code(
        self,
        code: str,
        *,
        openid: str | None = None,
        unionid: str | None = None,
        errcode: int = 0,
        busy: int = 0,
        reply: Any = None,
    ) -> None:
        session_key = secrets.token_urlsafe(18)
        with self._lock:
            self.session_keys.append(session_key)
            self.scripts[code] = _Script(openid, unionid, session_key, errcode, busy, reply=reply)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "WECHAT_API_BASE": self.base_url,
            "WECHAT_APPID": self.appid,
            "WECHAT_SECRET": self.secret,
        }

    def _answer(self, query: dict[str, str]) -> Any:
        with self._lock:
            self.requests.append(query)
            if query.get("appid") != self.appid:
                return {"errcode": 40013, "errmsg": "invalid appid"}
            if query.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if query.get("grant_type") != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            script = self.scripts.get(query.get("js_code", ""))
            if script is None:
                return {"errcode": 40029, "errmsg": "invalid code"}
            if script.reply is not None:
                return script.reply
            if script.busy > 0:
                script.busy -= 1
                return {"errcode": -1, "errmsg": "system error"}
            if script.errcode:
                return {"errcode": script.errcode, "errmsg": "scripted"}
            if script.used:
                return {"errcode": 40163, "errmsg": "code been used"}
            script.used = True
            answer: dict[str, Any] = {"openid": script.openid, "session_key": script.session_key}
            if script.unionid:
                answer["unionid"] = script.unionid
            return answer

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/sns/jscode2session":
                    self.send_response(404)
                    self.end_headers()
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                data = json.dumps(fake._answer(query)).encode()
                self.send_response(200)
                # WeChat really does answer JSON as text/plain.
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return _Handler
