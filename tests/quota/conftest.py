from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.quota import assert_ledger_consistent


@pytest.fixture(autouse=True)
def ledger_invariant() -> Iterator[None]:
    """Every quota test ends with the ledger explaining every user's quota exactly."""
    yield
    assert_ledger_consistent()
