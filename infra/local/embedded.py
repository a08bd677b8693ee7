"""The embedded COS of the local cloud: moto's S3 app on a side port.

moto's stock ThreadedMotoServer answers COS calls with 500 (it picks the AWS service from
the Authorization header, and COS signs with `q-sign-algorithm=...`), so the S3 app is
served directly. The COS SDK then talks to it with `CosConfig(Scheme="http",
IP="127.0.0.1", Port=port)` and `Host: <bucket>.<endpoint>`.
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietRequestHandler(WSGIRequestHandler):
    # The local cloud logs JSON lines on stdout; werkzeug's access log would break them.
    def log(self, type: str, message: str, *args: Any) -> None:
        return


class EmbeddedCos:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, bucket: str | None = None) -> EmbeddedCos:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from moto.moto_server.werkzeug_app import create_backend_app

            app = create_backend_app("s3")
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-cos", daemon=True
        )
        self._thread.start()
        if bucket:
            self.create_bucket(bucket)
        return self

    def create_bucket(self, bucket: str) -> None:
        import json

        import requests

        reply = requests.put(f"http://{self.endpoint}/{bucket}", timeout=10)
        reply.raise_for_status()
        # moto does not check COS's signatures, so a presigned GET reaches it as an anonymous
        # request, which it refuses on a private bucket: on a laptop anyone may read, as the
        # holder of a presigned URL could.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
        reply = requests.put(
            f"http://{self.endpoint}/{bucket}?policy", data=json.dumps(policy), timeout=10
        )
        reply.raise_for_status()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
