"""Queue-triggered functions through the local cloud: at-least-once delivery with
redelivery on failure, delayed delivery, messages that wait for their subscriber."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
import requests

from app.queue import publish
from app.queue.limits import MAX_EVENT_BYTES, PublishFailed
from app.queue.local import broker
from tests.local.conftest import MAX_ATTEMPTS

QUEUE = "queue-probe"


def _deliveries(redis: Any, message_id: str) -> list[float]:
    return [float(t) for t in redis.lrange(f"local-test:queue:{message_id}:deliveries", 0, -1)]


def _wait_idle(cloud: Any) -> None:
    reply = requests.get(cloud.url + "/_local/queues/idle", params={"timeout": 20}, timeout=30)
    assert reply.json()["idle"] is True


def test_a_failing_message_is_redelivered_until_it_succeeds(cloud: Any, redis_db: Any) -> None:
    message_id = secrets.token_hex(6)
    publish(QUEUE, {"id": message_id, "fail_times": 2})
    _wait_idle(cloud)
    assert len(_deliveries(redis_db, message_id)) == 3
    assert redis_db.get(f"local-test:queue:{message_id}:done")


def test_a_message_that_keeps_failing_is_dead_after_bounded_attempts(
    cloud: Any, redis_db: Any
) -> None:
    message_id = secrets.token_hex(6)
    publish(QUEUE, {"id": message_id, "fail_times": 99})
    _wait_idle(cloud)
    assert len(_deliveries(redis_db, message_id)) == MAX_ATTEMPTS
    assert not redis_db.get(f"local-test:queue:{message_id}:done")
    dead = [d for d in cloud.broker.dead if message_id in d.message.body]
    assert len(dead) == 1
    assert dead[0].attempt == MAX_ATTEMPTS


def test_delay_holds_a_message_back(cloud: Any, redis_db: Any) -> None:
    message_id = secrets.token_hex(6)
    published = time.time()
    reply = requests.post(
        f"{cloud.url}/_local/queues/{QUEUE}/messages",
        params={"delay_s": 1.0},
        json={"id": message_id},
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.json()["msg_id"]
    _wait_idle(cloud)
    (delivered,) = _deliveries(redis_db, message_id)
    assert delivered - published >= 0.95


def test_a_message_published_before_the_subscription_is_delivered(
    cloud: Any, redis_db: Any, early_message: str
) -> None:
    _wait_idle(cloud)
    assert len(_deliveries(redis_db, early_message)) == 1
    assert redis_db.get(f"local-test:queue:{early_message}:done")


def test_every_message_of_a_burst_is_delivered(cloud: Any, redis_db: Any) -> None:
    ids = [secrets.token_hex(6) for _ in range(50)]
    for message_id in ids:
        publish(QUEUE, {"id": message_id})
    _wait_idle(cloud)
    assert all(len(_deliveries(redis_db, m)) == 1 for m in ids)


def test_parked_messages_can_be_dropped() -> None:
    publish("local-test-nobody", {"id": "a"})
    publish("local-test-nobody", {"id": "b"}, delay_s=0)
    assert broker().drop_parked("local-test-nobody") == 2
    assert broker().drop_parked("local-test-nobody") == 0


@pytest.mark.parametrize("delay_s", [0, 0.01], ids=["now", "delayed"])
def test_a_message_over_scfs_event_limit_is_refused_as_the_scf_backend_refuses_it(
    delay_s: float,
) -> None:
    """The broker could carry it; SCF would not: refused at `make run` as in production."""
    before = broker().stats()
    with pytest.raises(PublishFailed, match=str(MAX_EVENT_BYTES)):
        publish("local-test-nobody", {"pad": "x" * MAX_EVENT_BYTES}, delay_s=delay_s)
    assert broker().stats() == before
    # At the limit exactly, it goes.
    publish("local-test-nobody", {"pad": "x" * (MAX_EVENT_BYTES - len('{"pad":""}'))})
    assert broker().drop_parked("local-test-nobody") == 1


def test_a_dev_path_with_a_final_newline_is_not_a_dev_endpoint(cloud: Any, redis_db: Any) -> None:
    """`$` would match before the `%0A` and publish; the path is another one, unknown."""
    message_id = secrets.token_hex(6)
    reply = requests.post(
        f"{cloud.url}/_local/queues/{QUEUE}/messages%0A", json={"id": message_id}, timeout=10
    )
    assert reply.status_code == 404, reply.text
    assert reply.json()["code"] == "NOT_FOUND"
    _wait_idle(cloud)
    assert _deliveries(redis_db, message_id) == []


@pytest.mark.parametrize("function", ["queue-probes", "health"], ids=["typo", "not-async"])
def test_a_dev_publish_to_a_function_not_invoked_asynchronously_is_404(
    cloud: Any, function: str
) -> None:
    """Nothing would ever take it: the broker would park it for a subscriber that never
    comes, and the publish would look like it worked."""
    before = broker().stats()["parked"]
    reply = requests.post(
        f"{cloud.url}/_local/queues/{function}/messages", json={"id": "x"}, timeout=10
    )
    assert reply.status_code == 404, reply.text
    assert reply.json()["code"] == "NOT_FOUND"
    assert f"no asynchronous function {function}" in reply.json()["message"]
    assert broker().stats()["parked"] == before


def test_a_dev_publish_over_scfs_event_limit_is_413_naming_the_limit(cloud: Any) -> None:
    """The refusal app.queue.publish makes, said as such rather than a 500."""
    reply = requests.post(
        f"{cloud.url}/_local/queues/{QUEUE}/messages",
        json={"pad": "x" * MAX_EVENT_BYTES},
        timeout=10,
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert str(MAX_EVENT_BYTES) in reply.json()["message"]
