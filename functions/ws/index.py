"""ws: the WebSocket web function. `scf_bootstrap` serves `app` on port 9000 (one connection
per instance); the local cloud mounts the same app at /ws. Its settings are read here, at
import: a refused instance never serves."""

from app.events.websocket import websocket_app

app = websocket_app()
