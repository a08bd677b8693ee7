"""ws: the WebSocket web function. `scf_bootstrap` serves `app` on port 9000 (one connection
per instance); the local cloud mounts the same app at /ws."""

from app.events.websocket import app

__all__ = ["app"]
