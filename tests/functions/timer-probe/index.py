"""Counts its runs per trigger in Redis and reports what the timer event said."""

from app.clock import time_left
from app.events.timer import timer_handler
from app.redis_client import get_redis


def probe(event):
    count = get_redis().incr(f"local-test:timer:{event.trigger_name}")
    return {
        "trigger": event.trigger_name,
        "message": event.message,
        "time": event.time.isoformat(),
        "count": count,
        "seconds_left": time_left(),
    }


main_handler = timer_handler(probe, name="timer-probe")
