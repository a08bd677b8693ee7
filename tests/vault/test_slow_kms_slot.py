"""KMS's time, opening the secrets a step sends, never comes out of the lease of the host
slot its call is made with: a slot's lease is the call's timeout + calls.SLOT_LEASE_MARGIN_S,
and a slow KMS (each Decrypt up to the SDK's 5 s timeout, one per secret new to the
instance) could outlast that margin, so the call would start on a slot any other instance
may already have taken: one call more on the host than PIPELINE_HOST_CONCURRENCY.

KMS is slow for real: the fake holds each Decrypt, once it has arrived, for HOLD_S."""

from __future__ import annotations

import secrets
import time

import pytest

from app.runner import slots
from tests.fakes.kms import FakeKms
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.pipelines import Customer, Worker
from tests.support.settings import settings_env
from tests.vault.test_admin_secrets import new_name, put_pipeline, put_secret, reference

TIMEOUT_S = 0.5  # the call's slot is leased for 5.5 s
HOLD_S = 3.0  # each of two secrets: 6 s of KMS in all, past the lease
WAIT_S = 20.0


@pytest.mark.slow  # KMS is held for about 6 s
def test_a_slow_kms_never_leaves_the_call_on_a_slot_another_instance_can_take(
    kms: FakeKms, worker: Worker
) -> None:
    key, first, second = kms.create_key(), new_name(), new_name()
    with settings_env(**kms.env(key)):
        assert put_secret(first, "sk-first").status == 204
        assert put_secret(second, "sk-second").status == 204
    taken_by_another: list[str | None] = []
    with FakeUpstream() as upstream:
        host = f"127.0.0.1:{upstream.port}"

        def answer(_call: Call) -> Answer:
            # Another instance, as the call starts, tries the host's only slot.
            other = slots.acquire(host, cap=1, lease_s=60)
            taken_by_another.append(other)
            if other is not None:
                slots.release(host, other)
            return Answer(200, {"ok": True})

        upstream.script("/render", answer)
        # Run by an instance of other settings, so that it asks KMS for each data key.
        with settings_env(**kms.env(kms.create_key()), PIPELINE_HOST_CONCURRENCY="1"):
            headers = {"Authorization": reference(first), "X-Second": reference(second)}
            step = {"id": "a", "type": "http", "url": upstream.url("/render")}
            step |= {"timeout_s": TIMEOUT_S, "retries": 0, "headers": headers}
            pipeline = "p-" + secrets.token_hex(4)
            assert put_pipeline(pipeline, [step]).status == 200
            # Opened one after the other, in the order of their names.
            slow = [kms.hold("Decrypt", name) for name in sorted((first, second))]
            user = Customer(quota=1)
            task_id = user.create(pipeline, {}).json()["id"]
            for held in slow:
                assert held.arrived.wait(WAIT_S)
                time.sleep(HOLD_S)
                held.release.set()
            task = user.wait(task_id)
            worker.wait_idle()

    assert task["status"] == "succeeded", task
    assert taken_by_another == [None]  # the call's slot was still its own
    [sent] = upstream.calls_to("/render")
    assert sent.headers["authorization"] == "Bearer sk-first"
    assert sent.headers["x-second"] == "Bearer sk-second"
    assert slots.in_use(host) == 0
