"""Delivery of SMS codes: Tencent Cloud SMS, or the console on a laptop.

`console` writes one line to stderr, outside the JSON log stream, so the code is readable
during local development and never becomes a log line; production refuses it. `tencent`
calls `SendSms` with the code as the template's first parameter; the SDK is imported here,
so only the function that sends codes pays for it at cold start.
"""

from __future__ import annotations

import logging
import sys

from app import tencentcloud
from app.config import get_settings


class DeliveryFailed(Exception):
    """Nothing was sent. `reason` is safe to log: it never holds the code. `number_refused`:
    the provider answered, and refused this phone number (its own limits for the number, a
    number on its blocklist, or one it cannot parse), so asking again soon sends nothing
    either; otherwise the call itself failed (the provider unreachable or refusing us)."""

    def __init__(self, reason: str, *, number_refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.number_refused = number_refused


def deliver(phone: str, code: str) -> None:
    if get_settings().sms_provider == "tencent":
        _send_tencent(phone, code)
    else:
        _print_console(phone, code)


def _print_console(phone: str, code: str) -> None:
    # One write per line: print() writes the text and its newline separately, so lines of
    # concurrent sends interleave.
    sys.stderr.write(f"[dev sms, not for production] {phone} code {code}\n")
    sys.stderr.flush()


def _send_tencent(phone: str, code: str) -> None:
    from tencentcloud.common.exception import TencentCloudSDKException  # cold start: SDK
    from tencentcloud.sms.v20210111 import models, sms_client  # cold start: the SDK, here only

    # The SDK logs whole request bodies at DEBUG, and this body carries the code.
    logging.getLogger("tencentcloud_sdk_common").setLevel(logging.INFO)
    settings = get_settings()
    client = tencentcloud.client(sms_client.SmsClient)
    request = models.SendSmsRequest()
    request.PhoneNumberSet = [phone]
    request.SmsSdkAppId = settings.sms_sdk_app_id
    request.SignName = settings.sms_sign_name
    request.TemplateId = settings.sms_template_id
    request.TemplateParamSet = [code]
    try:
        response = client.SendSms(request)
    except TencentCloudSDKException as exc:
        raise DeliveryFailed(f"SendSms failed: {exc.get_code()}") from None
    except Exception as exc:  # noqa: BLE001 - network errors surface as many types
        raise DeliveryFailed(f"SendSms failed: {type(exc).__name__}") from None
    statuses = response.SendStatusSet or []
    if not statuses or statuses[0].Code != "Ok":
        status = statuses[0].Code if statuses else "no status"
        raise DeliveryFailed(f"SendSms refused: {status}", number_refused=_of_number(status))


# The console's frequency policy counts per number (30 s, one hour, a day) and may answer
# with this code, which names no number.
_FREQUENCY_POLICY = "LimitExceeded.DeliveryFrequencyLimit"


def _of_number(status: str) -> bool:
    """Whether a SendStatus code refuses the number itself. SMS names most such refusals so:
    LimitExceeded.PhoneNumber*Limit, FailedOperation.PhoneNumberInBlacklist,
    InvalidParameterValue.IncorrectPhoneNumber; its frequency policy's does not."""
    return "PhoneNumber" in status or status == _FREQUENCY_POLICY
