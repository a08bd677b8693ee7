"""Every outside provider the API's routes reach, faked at once, for tests that drive every
route: Tencent Cloud (its SMS answering), WeChat login, WeChat Pay and Alipay, and a local
master key for the secrets routes to seal with."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.alipay import FakeAlipay
from tests.fakes.tencentcloud import FakeTencentCloud, sms_handler
from tests.fakes.wechat import FakeWechat
from tests.fakes.wechatpay import FakeWechatPay


@contextmanager
def all_providers() -> Iterator[tuple[FakeTencentCloud, dict[str, str]]]:
    """The Tencent Cloud fake (where the SMS codes sent can be read) and the settings that
    point every provider at its fake."""
    with (
        FakeTencentCloud() as tencent,
        FakeWechat() as wechat,
        FakeWechatPay() as wechatpay,
        FakeAlipay() as alipay,
    ):
        tencent.on("SendSms", sms_handler())
        yield (
            tencent,
            {
                "SMS_PROVIDER": "tencent",
                "SMS_SDK_APP_ID": "1400000001",
                "SMS_SIGN_NAME": "FuzzSign",
                "SMS_TEMPLATE_ID": "100001",
                "TENCENTCLOUD_REGION": "ap-guangzhou",
                # PUT /admin/secrets seals what it stores: without a key (APP_ENV=test has no
                # laptop default) a valid request would be a 503, a dependency missing.
                "LOCAL_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                **tencent.env(),
                **wechat.env(),
                # Orders reach the providers' fakes.
                **wechatpay.settings(),
                **alipay.settings(),
            },
        )
