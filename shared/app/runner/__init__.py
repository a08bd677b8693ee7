"""The pipeline runner: one queue message runs one step or one fork branch, and the saga
sweeper finds what a lost message or a dead worker left behind.

Messages (`app.pipeline.messages`) on PIPELINE_QUEUE ask for a step or for one branch of a
fork. All state lives in `task_steps`; every transition is a conditional UPDATE, so a
message delivered twice, or re-published by the sweeper, never does a thing twice:

- a step or branch runs only after claiming its row (pending, or running with no live
  lease); the lease value it set is its fencing token, so a worker whose row was taken over
  or cancelled meanwhile discards what it got (`rows`);
- a fork's window has a fixed width W: branch i, in the transaction that records its
  result, dispatches branch i + W, and most often claims it too, for its own invocation to
  run next; the settle that finds no branch left unsettled makes the JOIN, exactly once
  (`fork`);
- a message for work that already ended re-does only what follows it, which is how a
  worker that died after its commit is healed (`worker`, `fork`).

Messages are published after the commit that makes them valid (`outbox`). A message lost
in between leaves a row with no progress, which the sweeper finds and publishes again
(`recovery`).

The modules, each importing only those below it:

    sweeper    the saga sweeper job (timer, and POST /admin/jobs/saga-sweeper)
    rotation   where each sweeper stage stopped, for its next run to go on from
    recovery   `resume`: a stalled task's work published again
    worker     the pipeline-worker's consumer: claim, call, settle, and what follows
    fork       the fork's window and JOIN: start, settle and claim the successor, heal
    rows       the step rows' statements: claims and leases, give back, park, settle
    plans      a task's steps and input, kept per instance; the call each row makes
    calls      one upstream call with its retries, or a sim step; a call's host slot
    slots      the host slots themselves, in Redis
    outbox     the messages a transaction makes valid, published after its commit

This package may import `app.tasks` and `app.pipeline`; they never import it.
"""
