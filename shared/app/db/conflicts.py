"""Lock conflicts: a deadlock (MySQL's error 1213) rolls the whole transaction back; a lock
wait timeout (1205) only its statement (innodb_rollback_on_timeout is off by default), the
transaction left open with the locks it holds until `transaction()` rolls it back as the
error leaves the block. Running the unit of work again is the documented remedy for both,
so neither may be caught inside a unit that goes on: after a deadlock it would go on in
a new transaction, what it did before the error gone. The one exception is a lock wait
timeout raised as it is out of a savepoint (`statement_timed_out`): the transaction is
still open and rolled back to the savepoint, so the part in it may run again on top of what
came before (`app.idempotency.keyed_write`, which keeps a key claimed that way).

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

LOCK_WAIT_TIMEOUT = 1205
_RETRYABLE = {1213, LOCK_WAIT_TIMEOUT}
# What is still needed after a try's last wait: its rollback and the answer.
ANSWER_MARGIN_S = 1.0


def _code(exc: BaseException, errors: Any) -> int | None:
    """The server's error code of one database error of the chain (None for another)."""
    args: tuple[Any, ...] = tuple(getattr(getattr(exc, "orig", None), "args", ()) or ())
    if isinstance(exc, errors.OperationalError) and args and isinstance(args[0], int):
        return args[0]
    return None


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
        code = _code(current, errors)
        if code in _RETRYABLE:
            return code
        current = current.__cause__ or current.__context__
    return None


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock or lock wait timeout (`lock_conflict_code`): worth running the unit of
    work again."""
    return lock_conflict_code(exc) is not None


def statement_timed_out(exc: BaseException) -> bool:
    """`exc` is itself a lock wait timeout (1205), not one in the chain of a later error:
    only its statement was rolled back, the transaction is still open with what came
    before, and a savepoint it ran in was rolled back to (had the server rolled the
    transaction back whole, the failed `ROLLBACK TO SAVEPOINT` would be what is raised)."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and _code(exc, errors) == LOCK_WAIT_TIMEOUT


def another_try_fits(tried_s: float) -> bool:
    """Whether the unit of work can run once more and still answer before the platform ends
    the invocation, when the try that failed took `tried_s`: the next may take as long, or
    wait for a lock the whole DB_LOCK_WAIT_TIMEOUT_S. Always outside an invocation whose
    end is known."""
    left = time_left()
    if left is None:
        return True
    return left > max(tried_s, get_settings().db_lock_wait_timeout_s) + ANSWER_MARGIN_S


class Tries:
    """The tries of one unit of work, `attempts` in all, shared by every loop that runs a
    part of it again (`app.idempotency.keyed_write`: a savepoint's part within its
    transaction, and the transaction whole), so nesting them multiplies nothing."""

    def __init__(self, attempts: int = 5) -> None:
        self._left = attempts
        self._started = time.monotonic()

    def begin(self) -> None:
        """A try starts (what `again` measures it from)."""
        self._started = time.monotonic()

    def again(self, exc: BaseException) -> bool:
        """Whether the try that `exc` ended is run again: a lock conflict, a try left, and
        one that fits in the invocation. Once refused, every later question is too (an
        inner loop's refusal re-raised through an outer one stays refused)."""
        tried_s = time.monotonic() - self._started
        if self._left <= 1 or not is_lock_conflict(exc) or not another_try_fits(tried_s):
            self._left = 0
            return False
        self._left -= 1
        return True


def retry_conflicts(work: Callable[[], T], attempts: int = 5, *, tries: Tries | None = None) -> T:
    """`work()`, run again (up to `attempts` in all, or what is left of `tries`) while it
    ends in a lock conflict and another try fits in the invocation."""
    budget = tries if tries is not None else Tries(attempts)
    while True:
        budget.begin()
        try:
            return work()
        except Exception as exc:
            if not budget.again(exc):
                raise
