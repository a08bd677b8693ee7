"""Echoes each frame back through the reverse-push URL; `close-me` closes the socket."""

from app.events import websocket


def main_handler(event, context):
    ws = websocket.parse(event)
    if ws.data == "close-me":
        websocket.disconnect(ws.conn_id)
        return {"errNo": 0}
    delivered = websocket.push(ws.conn_id, {"echo": ws.data, "conn_id": ws.conn_id})
    return {"errNo": 0 if delivered else 1}
