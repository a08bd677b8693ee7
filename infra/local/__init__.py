"""The local cloud: API Gateway, SCF, timers, the queue and the WebSocket API on one port.

`python -m infra.local` (or `make run`) reads `serverless.yml` and the WebSocket API file,
loads every function as SCF would, and serves it on http://127.0.0.1:$PORT. Tests start the
same thing in-process with `LocalCloud(...).start()`. See `cloud.py` for what starts when.
"""

from infra.local.cloud import LocalCloud

__all__ = ["LocalCloud"]
