"""Lock conflicts: a deadlock (MySQL's error 1213) rolls the whole transaction back; a lock
wait timeout (1205) only its statement (innodb_rollback_on_timeout is off by default), the
transaction left open with the locks it holds until `transaction()` rolls it back as the
error leaves the block. Running the unit of work again is the documented remedy for both,
so neither may be caught inside a unit that goes on: after a deadlock it would go on in
a new transaction, what it did before the error gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

T = TypeVar("T")

_RETRYABLE = {1213, 1205}


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock or lock wait timeout anywhere in the chain: one that surfaced while
    SQLAlchemy was cleaning up (a failed `ROLLBACK TO SAVEPOINT`) is still a transaction
    the server rolled back whole."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        args: tuple[Any, ...] = tuple(getattr(getattr(current, "orig", None), "args", ()) or ())
        if isinstance(current, OperationalError) and len(args) > 0 and args[0] in _RETRYABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_conflicts(work: Callable[[], T], attempts: int = 5) -> T:
    """`work()`, run again (up to `attempts` in all) while it ends in a lock conflict."""
    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as exc:
            if not is_lock_conflict(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
