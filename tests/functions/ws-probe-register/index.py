"""Accepts a connection whose URL carries token=open-sesame; refuses every other one."""

from app.events import websocket


def main_handler(event, context):
    ws = websocket.parse(event)
    if ws.query_value("token") == "open-sesame":
        return websocket.accept(ws.conn_id)
    return websocket.refuse(ws.conn_id, "a valid token is required")
