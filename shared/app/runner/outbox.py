"""The runner's queue messages, each published after the commit of the transaction that
makes it valid (`tx.after_commit`), in the order added, and never after a rollback.

A message is what carries a task forward, so a publish that fails is not only logged, as
`after_commit` does with any effect: once the transaction's effects have all run, the first
failure is raised. The worker's own message then fails and the platform delivers it again;
that delivery finds the work done and re-does what follows it, the lost message included,
at once rather than PIPELINE_STALL_S later through the sweeper. The transaction itself
stays committed.

Owns: publishing the runner's messages. Never publishes before the commit, and never
swallows a failed publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.db.transaction import Transaction, transaction
from app.pipeline import messages
from app.pipeline.messages import Work


class Outbox:
    """One transaction (`tx`) and the messages its commit makes valid (`publish`)."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.failure: Exception | None = None

    def publish(self, work: Work, delay_s: float = 0) -> None:
        def send() -> None:
            try:
                messages.publish(work, delay_s)
            except Exception as error:
                if self.failure is None:
                    self.failure = error
                raise  # logged by the transaction, raised by `committing` after the rest

        fields = {"task_id": work.task_id, "step": work.position, "branch": work.branch}
        self.tx.after_commit(send, **fields)


@contextmanager
def committing() -> Iterator[Outbox]:
    """`with committing() as out:` a transaction, `out.tx`, whose messages (`out.publish`)
    go out once it has committed; the first publish that failed is raised after them all."""
    with transaction() as tx:
        outbox = Outbox(tx)
        yield outbox
    if outbox.failure is not None:
        raise outbox.failure
