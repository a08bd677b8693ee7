"""Lock conflicts: a deadlock (MySQL's error 1213) rolls the whole transaction back; a lock
wait timeout (1205) only its statement (innodb_rollback_on_timeout is off by default), the
transaction left open with the locks it holds until `transaction()` rolls it back as the
error leaves the block. Running the unit of work again is the documented remedy for both,
so neither may be caught inside a unit that goes on: after a deadlock it would go on in
a new transaction, what it did before the error gone.

Each try may wait for a lock up to DB_LOCK_WAIT_TIMEOUT_S (the session's
innodb_lock_wait_timeout), and may take as long as the one that failed (one that waited on
more than one statement, or did other work before its wait), so one is made only while the
longer of the two can end before the invocation does (`another_try_fits`). What a unit of
work does once whatever happens (a count taken, a provider's trade made) comes before the
unit retried, not inside it. A conflict no try resolved, in an HTTP function,
reaches the adapter, which answers it `503 SERVICE_UNAVAILABLE` with `Retry-After: 1`, its
transaction rolled back: the client may send it again. In the worker it fails the message
(redelivered), in a job the run.

Nothing here imports SQLAlchemy: an error is one of its only once it has been loaded, so the
HTTP adapter asks every failure without loading the database layer for it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from app.clock import time_left
from app.config import get_settings

T = TypeVar("T")

_RETRYABLE = {1213, 1205}
# What is still needed after a try's last wait: its rollback and the answer.
ANSWER_MARGIN_S = 1.0


def lock_conflict_code(exc: BaseException) -> int | None:
    """1213 or 1205 when `exc` is a database error with a deadlock or lock wait timeout
    anywhere in its chain (one that surfaced while SQLAlchemy was cleaning up, a failed
    `ROLLBACK TO SAVEPOINT`, is still a transaction the server rolled back whole); None
    otherwise, a bug raised while handling a conflict included."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None:  # never loaded, so nothing raised one of its errors
        return None
    if not isinstance(exc, errors.DBAPIError):
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        args: tuple[Any, ...] = tuple(getattr(getattr(current, "orig", None), "args", ()) or ())
        if isinstance(current, errors.OperationalError) and args and args[0] in _RETRYABLE:
            return int(args[0])
        current = current.__cause__ or current.__context__
    return None


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock or lock wait timeout (`lock_conflict_code`): worth running the unit of
    work again."""
    return lock_conflict_code(exc) is not None


def another_try_fits(tried_s: float) -> bool:
    """Whether the unit of work can run once more and still answer before the platform ends
    the invocation, when the try that failed took `tried_s`: the next may take as long, or
    wait for a lock the whole DB_LOCK_WAIT_TIMEOUT_S. Always outside an invocation whose
    end is known."""
    left = time_left()
    if left is None:
        return True
    return left > max(tried_s, get_settings().db_lock_wait_timeout_s) + ANSWER_MARGIN_S


def retry_conflicts(work: Callable[[], T], attempts: int = 5) -> T:
    """`work()`, run again (up to `attempts` in all) while it ends in a lock conflict and
    another try fits in the invocation."""
    for attempt in range(attempts):
        started = time.monotonic()
        try:
            return work()
        except Exception as exc:
            if not is_lock_conflict(exc) or attempt == attempts - 1:
                raise
            if not another_try_fits(time.monotonic() - started):
                raise
    raise AssertionError("unreachable")  # pragma: no cover
