from __future__ import annotations

from tests.support.pipelines import (  # noqa: F401 - fixtures
    _drain_parked_messages,
    _ledger_invariant,
    worker,
)
from tests.support.queue import queue  # noqa: F401 - fixture
