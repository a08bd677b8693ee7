"""Payments tests run against the providers' fakes (real HTTP, our SDK calls signed and
checked, their answers and notifications signed), with the ledger invariant checked after
every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.database import a_database_of_its_own
from tests.support.pipelines import _drain_parked_messages, _ledger_invariant  # noqa: F401
from tests.support.settings import settings_env


@pytest.fixture
def wechatpay() -> Iterator[FakeWechatPay]:
    with FakeWechatPay() as fake, settings_env(**fake.settings()):
        yield fake


@pytest.fixture
def alipay() -> Iterator[FakeAlipay]:
    with FakeAlipay() as fake, settings_env(**fake.settings()):
        yield fake


@pytest.fixture
def own_database(wechatpay: FakeWechatPay) -> Iterator[None]:
    """A database of the test's own, migrated: the pending orders in it are the test's."""
    with a_database_of_its_own("locks"):
        yield
