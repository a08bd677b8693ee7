"""A fake WeChat API: a real HTTP server on 127.0.0.1 with scripted answers, for login
(`GET /sns/jscode2session`) and subscription messages (`GET /cgi-bin/token`,
`POST /cgi-bin/message/subscribe/send`).

`fake.code("c1", openid="o1", unionid="u1")` makes login code c1 valid once (a second use is
40163, as WeChat answers); `fake.code("c2", errcode=40226)` scripts an error;
`fake.code("c3", openid="o3", busy=1)` answers -1 (system busy) that many times first;
`fake.code("c4", reply=[])` answers that JSON value as it is, whatever its shape. An
unknown code is 40029; a wrong appid or secret 40013 / 40125. Every request is recorded
in `fake.requests` (its query parameters).

Subscription messages: `cgi-bin/token` checks grant_type `client_credential`, the appid
(40013) and the secret (40125) and issues a new access token each time (`fake.tokens`);
`subscribe/send` takes only a token it issued and has not expired (40001 otherwise; 42001
for one `fake.expire_tokens()` expired), checks the body (`touser`, `template_id`, `data`:
47003) and accepts it into `fake.sent`, unless `fake.refuse(openid)` scripted 43101 for
that user. Each send request is recorded in `fake.sends` (`{"token", "body", "errcode"}`).

A hostile or broken answer: `fake.pad(path, size)` makes every answer at `path` go on past
its JSON with `size` bytes of spaces (still valid JSON, so only a bound on what is read
refuses it; `size` 0 ends it); `fake.cut_off` lists the path of each such answer whose
client closed before the whole of it was sent. `fake.answer_next(path, body)` makes the
next answer at `path` those bytes as they are (an HTML error page, JSON of another shape,
an errcode), the request recorded as usual.
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
from tests.support import log_guard

_PIECE = 1024 * 1024  # padding is written a piece at a time, never held whole


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
        self.tokens: list[str] = []  # every access token issued, oldest first
        self.expired: set[str] = set()
        self.refused: set[str] = set()  # openids that hold no subscription
        self.sent: list[dict[str, Any]] = []  # accepted subscription messages
        self.sends: list[dict[str, Any]] = []  # every subscribe/send request
        self.padding: dict[str, int] = {}
        self.cut_off: list[str] = []
        self.next_answers: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def pad(self, path: str, size: int) -> None:
        """Answers at `path` go on with `size` bytes of spaces after their JSON."""
        with self._lock:
            self.padding[path] = size

    def answer_next(self, path: str, body: bytes) -> None:
        """The next answer at `path` is `body`, whatever the request."""
        with self._lock:
            self.next_answers.setdefault(path, []).append(body)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired: 42001 from now on."""
        with self._lock:
            self.expired.update(self.tokens)

    def refuse(self, openid: str) -> None:
        """The user holds no subscription to the template: 43101."""
        with self._lock:
            self.refused.add(openid)

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
        log_guard.remember(session_key)
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

    def _token(self, query: dict[str, str]) -> Any:
        with self._lock:
            if query.get("grant_type") != "client_credential":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            if query.get("appid") != self.appid:
                return {"errcode": 40013, "errmsg": "invalid appid"}
            if query.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            token = secrets.token_urlsafe(48)
            log_guard.remember(token)
            self.tokens.append(token)
            return {"access_token": token, "expires_in": 7200}

    def _send(self, query: dict[str, str], raw: bytes) -> Any:
        token = query.get("access_token", "")
        with self._lock:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if token in self.expired:
                errcode = 42001
            elif token not in self.tokens:
                errcode = 40001
            elif not isinstance(body, dict) or not all(
                body.get(k) for k in ("touser", "template_id", "data")
            ):
                errcode = 47003
            elif body["touser"] in self.refused:
                errcode = 43101
            else:
                errcode = 0
                self.sent.append(body)
            self.sends.append({"token": token, "body": body, "errcode": errcode})
            return {"errcode": errcode, "errmsg": "ok" if errcode == 0 else "refused"}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _reply(self, answer: Any, path: str) -> None:
                data = json.dumps(answer).encode()
                with fake._lock:
                    padding = fake.padding.get(path, 0)
                    scripted = fake.next_answers.get(path)
                    if scripted:
                        data, padding = scripted.pop(0), 0
                self.send_response(200)
                # WeChat really does answer JSON as text/plain.
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data) + padding))
                self.end_headers()
                self.wfile.write(data)
                try:
                    while padding:
                        piece = min(padding, _PIECE)
                        self.wfile.write(b" " * piece)
                        padding -= piece
                except OSError:  # the client stopped reading and closed the connection
                    with fake._lock:
                        fake.cut_off.append(path)

            def _not_found(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/sns/jscode2session":
                    self._reply(fake._answer(query), url.path)
                elif url.path == "/cgi-bin/token":
                    self._reply(fake._token(query), url.path)
                else:
                    self._not_found()

            def do_POST(self) -> None:
                url = urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path != "/cgi-bin/message/subscribe/send":
                    self._not_found()
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                self._reply(fake._send(query, raw), url.path)

        return _Handler
