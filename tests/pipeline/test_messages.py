"""The runner's messages as the other release reads them: during a deploy a message one
release publishes (or parks in Redis) is consumed by the other, so `parse` takes what a
later release may add and what an earlier one left out."""

from __future__ import annotations

import pytest

from app.pipeline import messages
from app.pipeline.messages import Work
from tests.support.queue import Recorder

WORK = [Work("t1", 0), Work("t1", 2, branch=3), Work("t1", 2, branch=0, width=8)]


@pytest.mark.parametrize("work", WORK)
def test_every_message_parses_with_a_field_it_does_not_know(queue: Recorder, work: Work) -> None:
    messages.publish(work)
    (sent,) = queue.sent
    assert messages.parse(sent) == work
    assert messages.parse({**sent, "attempt": 2, "trace": {"id": "x"}}) == work


def test_a_branch_message_without_its_width_parses_as_width_unknown(queue: Recorder) -> None:
    messages.publish(Work("t1", 2, branch=1, width=4))
    (sent,) = queue.sent
    assert "width" in sent
    without = {key: value for key, value in sent.items() if key != "width"}
    assert messages.parse(without) == Work("t1", 2, branch=1)
