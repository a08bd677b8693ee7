"""The pipeline-worker's consumer: one queue message in, its row claimed, its call made and
its result settled, then what follows: the fork's next branch, run in this invocation while
its budget allows a whole call; the next step's message; the end of the task. The budget
is the platform's, not the worker's own: `calls.INVOCATION_BUDGET_S` from when the message
came in, less when the invocation's time limit leaves less than `calls.AFTER_LAST_CALL_S`
after it (`calls.budget_ends_at`), so no call runs into what follows it or past the
invocation's end.

A message for work that already ended re-does only what follows it (the next step's
message, the end of the task, the fork's dispatches and JOIN), which is how a worker that
died after its commit is healed. A failure between a claim's commit and its row's settle
(marking the task running, presigning the call's input or `previous`, keeping its output)
gives the claim and its host slot back before the message is raised for redelivery
(`_give_back`, fenced by the claim's lease), so the redelivered message runs the row at once
instead of finding it held until its lease runs out. A claim whose commit fails gives
its host slot back at once (no call is made with it: `app.runner.rows`). Once the call
answered, the row's lease is made to cover what follows (`rows.Attempts.hold`), fenced, so
an answer whose row was taken over meanwhile keeps and settles nothing. A claim's lease is
renewed, fenced, before each further try of marking its task running too, so a long wait
for the task's row, over many tries, leaves the claimed row to no duplicate message. (One
try's wait, up to DB_LOCK_WAIT_TIMEOUT_S, is not cut into parts: set above the shortest
lease, `rows.LEASE_MARGIN_S` and a little more, a single wait can outlast the claim.) The
row's settle after its call, and its park for a re-queued message, are tried again on a
lock conflict while another try fits the invocation (`app.db.conflicts`): failing the
message would call the upstream again, or leave the row held by the claim's lease instead
of the wait.

Owns: the run loop of one invocation and what follows a settled step. Never writes a step
row itself (`app.runner.rows` and `app.runner.fork` do, each write fenced by the claim's
lease), and never sleeps waiting for a slot or a Retry-After: such work goes back to the
queue with a delay.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import select

from app.clock import utcnow
from app.db.conflicts import Tries, retry_conflicts
from app.db.tables import task_steps, tasks
from app.db.transaction import transaction
from app.observability import logging as applog
from app.pipeline import messages
from app.pipeline.definition import ForkStep, HttpCall, Step
from app.pipeline.messages import Work
from app.runner import calls, fork, rows
from app.runner.outbox import committing
from app.runner.plans import Call, Plan, call_of, plans
from app.runner.rows import STEP_TERMINAL, Claim, RetryLater, Row
from app.storage import outputs, uploads
from app.tasks import lifecycle

log = applog.get_logger("app.runner.worker")


def handle(message: dict[str, Any]) -> None:
    """The pipeline-worker's consumer. Raising makes the platform deliver it again."""
    work = messages.parse(message)
    if work is None:  # can never succeed: redelivering it would only repeat that
        return
    # Every line of this message, its own "queue message" line included, names its task.
    applog.bind(task_id=work.task_id)
    ends_at = calls.budget_ends_at()
    task_id, position, branch = work.task_id, work.position, work.branch
    # One transaction reads the row and, when there is a call to make, claims it: the
    # common path of a message costs one commit before the call. A branch message reads
    # the task's plan from this instance's memory when it can: it never changes, and a
    # cancelled task's rows are cancelled too, which the claim sees.
    claim: Claim | RetryLater | None = None
    call: Call | None = None
    row: Row | None = None
    status: str | None = None
    with committing() as out:
        tx = out.tx
        plan = plans.get(task_id) if work.is_branch else None
        if plan is None:
            task = (
                tx.execute(
                    select(
                        tasks.c.id, tasks.c.user_id, tasks.c.status, tasks.c.input, tasks.c.steps
                    ).where(tasks.c.id == task_id)
                )
                .mappings()
                .first()
            )
            if task is None or task["status"] in lifecycle.TERMINAL:
                return
            status = task["status"]
            plan = plans.remember(task_id, task["user_id"], task["input"], task["steps"])
        if not 0 <= position < len(plan.steps):
            return
        call = call_of(plan.steps[position], plan.input, branch)
        if call is not None:
            claim = rows.claim_pending(tx, task_id, position, branch, call.step)
        if claim is None:  # not pending: look at the row and decide
            row = rows.step_row(tx, task_id, position, branch, lock=True)
            if row is None:
                return
            if call is not None and row["status"] not in STEP_TERMINAL:
                claim = rows.claim(tx, row, call.step)
        if isinstance(claim, RetryLater):
            # Goes out at this commit, before a queued task is marked running below: it is
            # delayed, and marking running is conditional, so which comes first is moot.
            out.publish(work, claim.delay_s)
    if status == "queued" and isinstance(claim, Claim):
        assert call is not None
        claim = _mark_running(work, call, claim)
    elif status == "queued":
        lifecycle.mark_running(task_id)
    step = plan.steps[position]
    if isinstance(claim, Claim):
        assert call is not None
        _run(plan, work, call, claim, ends_at)
    elif isinstance(claim, RetryLater) or row is None:
        return
    elif row["status"] in STEP_TERMINAL:
        if branch < 0:
            _after_step(task_id, plan.steps, position)
        elif isinstance(step, ForkStep):  # the JOIN or the next dispatch may still be due
            healed = fork.heal(task_id, step, position, plan.limits)
            _carry_on(task_id, plan.steps, position, healed)
    elif call is None and isinstance(step, ForkStep) and branch < 0:
        started = fork.start(task_id, step, position, plan.limits)
        _carry_on(task_id, plan.steps, position, started)


def _mark_running(work: Work, call: Call, claim: Claim) -> Claim:
    """The task marked running after the claim's commit, the claim's lease renewed before
    each further try (`_WhileHeld`); the claim as it now is. On failure the claim is given
    back before the error is raised."""
    held = rows.Attempts(work.task_id, work.position, work.branch, claim.lease, claim.lease_s)
    try:
        lifecycle.mark_running(work.task_id, _WhileHeld(held))
    except BaseException:
        _give_back(call, claim, held, called=False, kept=[])
        raise
    return replace(claim, lease=held.lease)  # renewed while it waited


class _WhileHeld(Tries):
    """The tries of marking the task running after the claim's commit, each further one
    made only once the claim's lease was renewed (fenced, `rows.Attempts.hold`): waits for
    the task's row as long as the lease would leave the row to a duplicate message, which
    finds its call counted and never made (on the step's last call, failing the step) while
    this holder goes on to call. Refused once the row is no longer ours."""

    def __init__(self, held: rows.Attempts) -> None:
        super().__init__()
        self.held = held

    def again(self, exc: BaseException) -> bool:
        return super().again(exc) and self.held.hold(self.held.lease_s)


def _run(plan: Plan, work: Work, call: Call, claim: Claim, ends_at: float) -> None:
    """Make the claimed call, then settle the row (a branch settles with its fork's window,
    see `fork.settle`) or park it for a re-queued message. A branch whose settle claimed
    its successor runs that one next, in this invocation, while `ends_at` (the
    invocation's budget, time.monotonic()) allows."""
    task_id, position, row_branch, width = work.task_id, work.position, work.branch, work.width
    step = plan.steps[position]
    while True:
        branch = row_branch if row_branch >= 0 else None
        key = f"{task_id}:{step.id}:{'-' if branch is None else branch}"
        attempts = rows.Attempts(task_id, position, row_branch, claim.lease, claim.lease_s)
        kept: list[str] = []  # a branch keeps its slot for the successor it may run next
        called = False
        try:
            # Upstream sees presigned GETs for the owner's uploads and for stored outputs.
            payload = {
                "task_id": task_id,
                "step_id": step.id,
                "branch": branch,
                "input": uploads.outbound(plan.user_id, call.input),
                "previous": outputs.render(task_id, claim.previous),
            }
            # Filled before the slot is looked at again: KMS's time is not the lease's.
            headers = None
            if isinstance(call.step, HttpCall):
                headers = calls.prepare_headers(call.step)
            if isinstance(call.step, HttpCall) and claim.slot is not None:
                # The claim took its slot before its commit, and that commit, marking the
                # task running and presigning the input came before this call: a stall there
                # can outlast the slot's lease, and the slot is then anyone's to take.
                slot, ends = calls.live_slot(call.step, claim.slot, claim.slot_lease_ends)
                claim = replace(claim, slot=slot, slot_lease_ends=ends)
                if claim.slot is None:  # lost since it was taken, and the host is full
                    _requeue(Work(task_id, position, row_branch, width), attempts, claim)
                    return
            called = True  # from here the upstream may have been called
            if isinstance(call.step, HttpCall):
                outcome = calls.run_http(
                    call.step,
                    payload,
                    key,
                    claim.attempts,
                    attempts,
                    claim.slot,
                    ends_at,
                    kept if branch is not None else None,
                    headers,
                )
            else:
                outcome = calls.run_sim(call.step, payload)
            # What follows the answer (its output kept in COS, the settle) runs under a lease
            # that covers it, or not at all once the row was taken over: a duplicate message
            # must not take over an answer being stored (and on the last call fail the step),
            # nor a late answer write its object over the one its taker recorded.
            hold = partial(attempts.hold, rows.AFTER_CALL_LEASE_S)
            if isinstance(outcome, calls.Result) and not retry_conflicts(hold):
                outcome = calls.Abandoned()
            if isinstance(outcome, calls.Succeeded):
                name = f"{step.id}.{'-' if branch is None else branch}"
                kept_output = outputs.keep(task_id, name, outcome.output, plan.limits.row)
                outcome = calls.Succeeded(kept_output)
        except BaseException:
            _give_back(call, claim, attempts, called=called, kept=kept)
            raise
        if isinstance(outcome, calls.Requeue):
            # Tried again on a lock conflict, as a settle is: failing the message would
            # leave the row held by the claim's lease (minutes) instead of the wait.
            parked = Work(task_id, position, row_branch, width)
            park = partial(_park, parked, attempts, outcome.delay_s, unmade=outcome.unmade)
            retry_conflicts(park)
            return
        if isinstance(outcome, calls.Abandoned):
            for token in kept:  # a branch's slot, kept for a successor it no longer claims
                calls.release_slot(call.step, token)
            return
        if not isinstance(step, ForkStep):
            # Tried again on a lock conflict, as a branch's settle is: failing the message
            # would drop the call's result, and its redelivery call the upstream once more.
            recorded = retry_conflicts(partial(_settle, attempts, outcome))
            if recorded:
                _after_step(task_id, plan.steps, position)
            return
        spare: list[calls.HeldSlot] = []
        if isinstance(call.step, HttpCall):
            for token in kept:
                ends = claim.slot_lease_ends if token == claim.slot else 0.0
                spare.append(calls.HeldSlot(call.step.host_key, token, ends))
        settled = fork.Settled(
            attempts, outcome, width, claim.previous, plan.input, ends_at, spare, plan.limits
        )
        advance = fork.settle(task_id, step, position, settled)
        following = _carry_on(task_id, plan.steps, position, advance)
        if following is None:
            return
        row_branch, width = following.branch, following.width
        call, claim = following.call, following.claim


def _settle(attempts: rows.Attempts, result: calls.Result) -> bool:
    with transaction() as tx:
        return rows.settle(tx, attempts, result, utcnow())


def _park(work: Work, attempts: rows.Attempts, delay_s: float, *, unmade: bool) -> None:
    """The row parked for `work`'s message, which goes out `delay_s` later (`unmade`: its
    last counted call was not made, and is not counted, see `rows.park`). One unit,
    safe to run again whole after a conflict: the park is fenced by the claim's lease (a try
    after another took the row over leaves the row to it, and its message is one more
    duplicate, handled as any other) and the message is sent only at the commit, so
    a try rolled back sent none."""
    with committing() as out:
        rows.park(out.tx, attempts, delay_s, unmade=unmade)
        out.publish(work, delay_s)


def _requeue(work: Work, attempts: rows.Attempts, claim: Claim) -> None:
    """A claim with no slot to call with goes back to the queue as any work without a
    slot does: the call it counted and did not make taken back (`rows.give_back`, pending
    again when it was the row's first), so the step still gets 1 + retries calls, and its
    message published with a slot retry's delay."""
    with committing() as out:
        if rows.give_back(out.tx, attempts, claim):
            out.publish(work, calls.slot_retry_delay())


def _give_back(
    call: Call, claim: Claim, attempts: rows.Attempts, *, called: bool, kept: list[str]
) -> None:
    """After a failure between the claim's commit and the row's settle (the task marked
    running, the input or `previous` presigned, the output kept), the claim and its host
    slot given back, so the redelivered message runs the row at once rather than after the
    lease (minutes; the slot's too). The row only while the claim's lease is still its own
    (`rows.give_back`); a slot token is this claim's alone. Best effort: a give-back that
    fails too (the database or Redis down) is logged, and the leases run out as before; the
    caller raises the first failure."""
    try:
        for token in kept:
            calls.release_slot(call.step, token)
        if not called:  # else the call released it, or it is in `kept`
            calls.release_slot(call.step, claim.slot)
        with transaction() as tx:
            rows.give_back(tx, attempts, None if called else claim)
    except Exception as error:  # noqa: BLE001 - the first failure is what the caller raises
        # The type only: an unknown exception's text may carry anything (SQL, parameters).
        applog.log_fields(
            log,
            logging.WARNING,
            "claim not given back",
            task_id=attempts.task_id,
            position=attempts.position,
            branch=attempts.branch,
            error=type(error).__name__,
        )


def _carry_on(
    task_id: str, steps: list[Step], position: int, advance: fork.Advance
) -> fork.Next | None:
    """After the fork moved: what follows it once it has ended; the successor claimed for
    this invocation to run, if any."""
    if advance.fork_ended:
        _after_step(task_id, steps, position)
    return advance.following


def _after_step(task_id: str, steps: list[Step], position: int) -> None:
    """What follows a settled step: the next step, or the end of the task."""
    c = task_steps.c
    with committing() as out:  # the step's row and the next step's, in one query
        found = {
            r["position"]: r
            for r in out.tx.execute(
                select(task_steps).where(
                    c.task_id == task_id, c.position.in_((position, position + 1)), c.branch == -1
                )
            ).mappings()
        }
        row = found.get(position)
        following = found.get(position + 1) if position + 1 < len(steps) else None
        if row is None:
            return
        if row["status"] == "succeeded" and following is not None:
            if following["status"] == "pending":
                out.publish(Work(task_id, position + 1))
            return
    # The end of the task is a transition of its own (`lifecycle`), with its own commit.
    if row["status"] == "failed":
        lifecycle.finish(task_id, error=lifecycle.failed_step_error(row["step_id"], row["error"]))
    elif row["status"] == "succeeded":
        lifecycle.finish(task_id, output=row["output"])
