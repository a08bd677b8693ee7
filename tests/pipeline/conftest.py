from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.pipelines import _drain_parked_messages, worker  # noqa: F401 - fixtures
from tests.support.quota import assert_ledger_consistent


@pytest.fixture(autouse=True)
def _ledger_invariant(clean_redis: Any) -> Iterator[None]:
    yield
    assert_ledger_consistent()
