"""A provider call ends within its bound in all, not per socket read: a provider (or a proxy)
that sends its status line and headers at once and then drips the body a byte at a time
cannot hold `POST /orders` past what the invocation has left, nor an adapter's call past
its timeout. The call fails as the provider's failure, with its answer and log line, and
the connection is closed under the drip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import get_settings
from app.payments.alipay import from_settings as alipay_adapter
from app.payments.gateway import ProviderError
from app.payments.wechatpay import from_settings as wechat_pay_adapter
from tests.fakes.alipay import FakeAlipay
from tests.fakes.drip import Dripping
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.function_url import context, event, reply_of
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, new_plan
from tests.support.settings import settings_env


@pytest.fixture
def drip() -> Iterator[Dripping]:
    with Dripping() as server:
        # The whole answer takes far longer than any bound below.
        assert len(server.body) * server.interval_s > 15
        yield server


def dripped_env(channel: str, drip: Dripping) -> dict[str, str]:
    if channel == "wechat":
        return {"WECHATPAY_API_BASE": drip.url()}
    return {"ALIPAY_GATEWAY": drip.url("/gateway.do")}


def cut_short(drip: Dripping) -> None:
    assert drip.hung_up.wait(5), "the connection was not closed under the drip"
    assert drip.sent < len(drip.body)


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_dripping_provider_is_a_502_within_what_the_invocation_has_left(
    request: pytest.FixtureRequest, drip: Dripping, channel: str
) -> None:
    """A 3.5 s invocation: the provider's call gets what is left less the answer's margin
    (1 s), about 2.5 s, rather than its 5 s."""
    request.getfixturevalue("wechatpay" if channel == "wechat" else "alipay")
    buyer = Buyer()
    plan = new_plan()
    with settings_env(**dripped_env(channel, drip)):
        sent = event(
            "POST", "/orders", body={"plan_id": plan, "channel": channel}, token=buyer.token
        )
        with capture_logs() as logs:
            invocation = {**context("orders"), "time_limit_in_ms": 3500}
            refused = reply_of(handler("orders")(sent, invocation))

    assert refused.status == 502, refused.body
    assert refused.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    [line] = logs.where(message="payment provider refused an order")
    assert line["channel"] == channel
    assert "no answer within 2." in line["error"], line
    cut_short(drip)


def test_outside_an_invocation_an_alipay_call_ends_by_its_timeout(
    alipay: FakeAlipay, drip: Dripping
) -> None:
    with settings_env(**dripped_env("alipay", drip)):
        adapter = alipay_adapter(get_settings(), timeout_s=1)
    with pytest.raises(ProviderError, match=r"alipay\.trade\.query: no answer within 1 s"):
        adapter.query("ord_A1b2C3d4E5f6")
    cut_short(drip)


@pytest.mark.slow
def test_outside_an_invocation_a_wechat_pay_call_ends_by_its_5_seconds(
    wechatpay: FakeWechatPay, drip: Dripping
) -> None:
    with settings_env(**dripped_env("wechat", drip)):
        adapter = wechat_pay_adapter(get_settings())
    with pytest.raises(ProviderError, match="WeChat Pay query: no answer within 5 s"):
        adapter.query("ord_A1b2C3d4E5f6")
    cut_short(drip)
