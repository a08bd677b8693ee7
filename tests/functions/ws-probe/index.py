"""The ws function's app behind two handshakes it never makes, for tests/realtime/
test_bootstrap.py (which serves it with ws's own scf_bootstrap; not in serverless.yml): at
/unanswered the app returns without answering, at /crash it raises, as an app with a bug
would. uvicorn must still log both at ERROR."""

from app.events.websocket import websocket_app

ws_app = websocket_app()


async def app(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"] in ("/unanswered", "/crash"):
        await receive()  # the handshake's websocket.connect
        if scope["path"] == "/crash":
            raise RuntimeError("the probe crashed on purpose")
        return
    await ws_app(scope, receive, send)
