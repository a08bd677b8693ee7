"""Records every delivery of a message in Redis and fails the first `fail_times` of them."""

import time

from app.events.queue import queue_handler
from app.redis_client import get_redis


def consume(message):
    redis = get_redis()
    key = f"local-test:queue:{message['id']}"
    redis.rpush(f"{key}:deliveries", repr(time.time()))
    if redis.llen(f"{key}:deliveries") <= int(message.get("fail_times", 0)):
        raise RuntimeError("failing this delivery on purpose")
    redis.set(f"{key}:done", repr(time.time()))


main_handler = queue_handler(consume)
