"""The admin actions' audit trail: which admin did what, to whom, when.

Every change an admin makes through the API (a user's role or state, a quota grant, a
secret, a pipeline, a plan, a job run) is recorded as one `admin_actions` row written in
the transaction of the change itself (`app.audit.trail.record`), so a committed change always
has its row and a rolled back one leaves none, followed after the commit by one `admin
action` log line (logger `app.audit`) with the same fields. A row holds what changed, never
a secret's value.

The acting admin reaches each domain verb as an explicit `actor` argument, made by the
route from its request; nothing is read from a global. This module stays free of the
database, so a route can name an `Actor` without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """The admin behind a change, and the request it came in."""

    user_id: str
    request_id: str
