"""Records in Redis that the connection's cleanup ran."""

from app.events import websocket
from app.redis_client import get_redis


def main_handler(event, context):
    ws = websocket.parse(event)
    get_redis().incr(f"local-test:ws:closed:{ws.conn_id}")
    return {"errNo": 0}
