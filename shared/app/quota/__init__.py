"""Quota: the saga that holds a task's cost (reserve, then confirm or cancel), grants, and
the ledger invariant. The verbs are in `app.quota.service`, the check in `app.quota.ledger`."""

from app.quota.rows import LedgerEntry
from app.quota.service import (
    Grant,
    Reservation,
    ReservationRefused,
    Settlement,
    cancel,
    confirm,
    grant,
    reserve,
)

__all__ = [
    "Grant",
    "LedgerEntry",
    "Reservation",
    "ReservationRefused",
    "Settlement",
    "cancel",
    "confirm",
    "grant",
    "reserve",
]
