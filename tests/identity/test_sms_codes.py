"""POST /auth/sms-code: delivery through the fake Tencent Cloud SMS API, limits, storage."""

from __future__ import annotations

import math
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from app.identity import sms
from app.redis_client import get_redis
from tests.fakes.tencentcloud import Call, FakeTencentCloud, TencentCloudError, sms_handler
from tests.identity.conftest import Flows, new_ip, new_phone
from tests.support.logs import capture_logs
from tests.support.settings import settings_env


def test_a_code_is_sent_through_sendsms_with_a_valid_tc3_signature(flows: Flows) -> None:
    phone = new_phone()
    refused_before = len(flows.tencent.refused)
    reply = flows.sms(phone[3:], "register")
    assert reply.status == 200, reply.body
    assert reply.json() == {"cooldown_s": 60, "expires_in": 300}
    sent = flows.tencent.calls_of("SendSms")[-1]
    assert sent.service == "sms" and sent.version == "2021-01-11" and sent.region == "ap-guangzhou"
    assert sent.params["PhoneNumberSet"] == [phone]
    assert sent.params["SmsSdkAppId"] == "1400000001"
    assert sent.params["SignName"] == "TestSign" and sent.params["TemplateId"] == "100001"
    (code,) = sent.params["TemplateParamSet"]
    assert len(code) == 6 and code.isdigit()
    assert len(flows.tencent.refused) == refused_before


def test_the_code_is_stored_only_as_a_hash(flows: Flows) -> None:
    phone = new_phone()
    code = flows.code_for(phone)
    redis = get_redis()
    stored = redis.hgetall(f"sms:code:login:{phone}")
    assert set(stored) == {"h", "tries"} and code not in stored["h"]
    assert 290 <= redis.ttl(f"sms:code:login:{phone}") <= 300
    for key in redis.scan_iter("*"):
        if redis.type(key) == "string":
            assert code not in (redis.get(key) or "")


def test_cooldown_per_phone(flows: Flows) -> None:
    phone = new_phone()
    assert flows.sms(phone).status == 200
    again = flows.sms(phone, "register")  # the cooldown is the phone's, whatever the purpose
    assert (again.status, again.json()["code"]) == (429, "SMS_RATE_LIMITED")
    assert 55 <= int(again.header("Retry-After")) <= 60
    assert flows.sms(new_phone()).status == 200


def test_retry_after_is_rounded_up_so_waiting_that_long_is_enough(flows: Flows) -> None:
    phone = new_phone()
    assert flows.sms(phone).status == 200
    # About 59.5 s of the cooldown are left: 60 to wait, never 59. The bounds are read around
    # the request, so a slow machine moves them rather than failing the test.
    get_redis().pexpire(sms.cooldown_key(phone), 59_500)
    asked = time.monotonic()
    again = flows.sms(phone)
    took_ms = (time.monotonic() - asked) * 1000
    left_ms = get_redis().pttl(sms.cooldown_key(phone))
    assert left_ms > 58_000
    wait = int(again.header("Retry-After"))
    assert math.ceil(left_ms / 1000) <= wait <= math.ceil((left_ms + took_ms) / 1000)


def test_the_hourly_budget_across_all_phones_and_networks(flows: Flows) -> None:
    now = datetime.now(timezone(timedelta(hours=8)))
    get_redis().delete(sms.budget_key(now))
    with settings_env(SMS_GLOBAL_PER_HOUR="3"):
        for _ in range(3):
            assert flows.sms(new_phone(), ip=new_ip()).status == 200
        phone, ip = new_phone(), new_ip()
        refused = flows.sms(phone, ip=ip)
        assert (refused.status, refused.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert "being sent" in refused.json()["message"]
        rest_of_hour = 3600 - (now.minute * 60 + now.second)
        assert 1 <= int(refused.header("Retry-After")) <= rest_of_hour
        # Nothing of the refused request was kept: its phone and IP are untouched.
        assert get_redis().exists(sms.cooldown_key(phone)) == 0
    assert flows.sms(phone, ip=ip).status == 200


def test_daily_limit_per_phone(flows: Flows) -> None:
    with settings_env(SMS_PER_PHONE_PER_DAY="3"):
        phone = new_phone()
        for _ in range(3):
            flows.code_for(phone)
        get_redis().delete(sms.cooldown_key(phone))
        reply = flows.sms(phone)
    assert (reply.status, reply.json()["code"]) == (429, "SMS_RATE_LIMITED")
    assert "today" in reply.json()["message"]
    # The phone may ask again from the next China day, whose counter is another key: the
    # wait ends at midnight, China time, not a day or two after the day's first code.
    now = datetime.now(timezone(timedelta(hours=8)))
    rest_of_day = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert 1 <= int(reply.header("Retry-After")) <= rest_of_day + 1


def test_hourly_limit_per_ip(flows: Flows) -> None:
    with settings_env(SMS_PER_IP_PER_HOUR="2"):
        ip = new_ip()
        assert flows.sms(new_phone(), ip=ip).status == 200
        assert flows.sms(new_phone(), ip=ip).status == 200
        reply = flows.sms(new_phone(), ip=ip)
        assert (reply.status, reply.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert flows.sms(new_phone(), ip=new_ip()).status == 200


def test_a_refusal_by_the_ip_leaves_the_phone_limits_untaken(flows: Flows) -> None:
    # The phone's cooldown and day count are taken first, and given back when the IP refuses.
    with settings_env(SMS_PER_IP_PER_HOUR="1", SMS_PER_PHONE_PER_DAY="1"):
        ip, phone = new_ip(), new_phone()
        assert flows.sms(new_phone(), ip=ip).status == 200
        refused = flows.sms(phone, ip=ip)
        assert (refused.status, refused.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert "network" in refused.json()["message"]
        assert get_redis().exists(sms.cooldown_key(phone)) == 0
        # No key of the phone is left: a client past its address's limit, asking for a
        # new phone each time, would otherwise leave a day counter for each until midnight.
        assert list(get_redis().scan_iter(match=f"sms:*{phone}*")) == []
        assert flows.sms(phone, ip=new_ip()).status == 200  # no cooldown, a whole day left


def test_a_send_that_fails_is_503_and_takes_nothing_of_the_phone_or_the_budget(
    flows: Flows,
) -> None:
    # While SendSms fails (here: refused for our signature, as in an outage of the provider),
    # users retry: were the failures counted, ten of them would close the phone for the China
    # day, and the platform's failures the hour's budget for every phone once sending works.
    now = datetime.now(timezone(timedelta(hours=8)))
    get_redis().delete(sms.budget_key(now))
    phone = new_phone()
    with settings_env(SMS_PER_PHONE_PER_DAY="2", SMS_GLOBAL_PER_HOUR="2"):
        with settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"), capture_logs() as logs:
            for _ in range(3):
                reply = flows.sms(phone, ip=new_ip())
                assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
                assert get_redis().exists(sms.cooldown_key(phone)) == 0
                assert get_redis().exists(f"sms:code:login:{phone}") == 0
        assert {line["level"] for line in logs.where(message="sms not sent")} == {"error"}
        assert flows.sms(phone, ip=new_ip()).status == 200
        assert flows.sms(new_phone(), ip=new_ip()).status == 200


def test_a_send_that_fails_after_a_newer_one_leaves_the_newer_code(
    flows: Flows, tencent: FakeTencentCloud
) -> None:
    # The first send's SendSms answers only after its cooldown has passed and a second send
    # for the phone stored and sent its code; then it fails. Dropping "the phone's code" then
    # would drop the second one, which the user has just received.
    phone = new_phone()
    sent = sms_handler()  # accepts the phone
    second_sent, first_in_provider = threading.Event(), threading.Event()

    def first_late_and_failing(params: dict[str, Any], call: Call) -> dict[str, Any]:
        if not first_in_provider.is_set():
            first_in_provider.set()
            assert second_sent.wait(10)
            raise TencentCloudError("InternalError.Timeout", "the provider timed out")
        return sent(params, call)

    usual = tencent.handlers["SendSms"]
    tencent.on("SendSms", first_late_and_failing)
    replies: list[Any] = []
    try:
        with settings_env(SMS_COOLDOWN_S="1"):
            first = threading.Thread(target=lambda: replies.append(flows.sms(phone, ip=new_ip())))
            first.start()
            assert first_in_provider.wait(10)
            time.sleep(1.1)  # the first send's cooldown ends
            assert flows.sms(phone, ip=new_ip()).status == 200
            second_sent.set()
            first.join(10)
    finally:
        second_sent.set()
        tencent.on("SendSms", usual)
    assert (replies[0].status, replies[0].json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    reply = flows.code_login(phone, flows.last_code(phone))
    assert reply.status == 200, reply.body


def test_a_number_the_provider_refuses_keeps_its_limits_but_not_the_budget(
    flows: Flows,
) -> None:
    # The provider answered and refused this number (its own daily limit for it): asking again
    # within the cooldown sends nothing either, and the number's day count bounds the calls
    # made for it. Nothing was paid for, so the hour's budget is given back.
    _refused_number_keeps_its_limits(flows, "+8613000000000")


def test_a_number_refused_by_the_frequency_policy_keeps_its_limits_too(flows: Flows) -> None:
    # The provider's frequency policy counts per number, and its code names none.
    _refused_number_keeps_its_limits(flows, "+8613000000001")


def _refused_number_keeps_its_limits(flows: Flows, phone: str) -> None:
    now = datetime.now(timezone(timedelta(hours=8)))
    get_redis().delete(sms.budget_key(now))
    with settings_env(SMS_GLOBAL_PER_HOUR="1"), capture_logs() as logs:
        reply = flows.sms(phone, ip=new_ip())
        assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
        # The client's number, not our failure: no alarm on ERROR pages for it.
        [line] = logs.where(message="sms not sent")
        assert line["level"] == "warning", line
        assert get_redis().exists(sms.cooldown_key(phone)) == 1
        assert get_redis().exists(f"sms:code:login:{phone}") == 0
        again = flows.sms(phone, ip=new_ip())
        assert (again.status, again.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert flows.sms(new_phone(), ip=new_ip()).status == 200


def test_a_wrong_secret_key_is_refused_by_the_signature_check(flows: Flows) -> None:
    refused_before = len(flows.tencent.refused)
    with settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"):
        reply = flows.sms(new_phone())
    assert reply.status == 503
    assert flows.tencent.refused[refused_before:] == [
        {"code": "AuthFailure.SignatureFailure", "action": "SendSms"}
    ]


def test_the_fake_refuses_a_tampered_body_and_an_unknown_action() -> None:
    import json
    import time
    from datetime import datetime, timezone

    import requests

    from tests.fakes.tencentcloud import tc3_signature

    with FakeTencentCloud() as fake:
        fake.on("SendSms", lambda params, call: {"SendStatusSet": []})

        def post(action: str, signed_body: bytes, sent_body: bytes) -> str:
            ts = str(int(time.time()))
            date = datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%d")
            ct = "application/json"
            sig = tc3_signature(
                fake.secret_key,
                service="sms",
                date=date,
                timestamp=ts,
                content_type=ct,
                host=fake.endpoint,
                body=signed_body,
            )
            auth = (
                f"TC3-HMAC-SHA256 Credential={fake.secret_id}/{date}/sms/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={sig}"
            )
            headers = {
                "Content-Type": ct,
                "Host": fake.endpoint,
                "Authorization": auth,
                "X-TC-Action": action,
                "X-TC-Timestamp": ts,
                "X-TC-Version": "2021-01-11",
            }
            reply = requests.post(
                f"http://{fake.endpoint}/", data=sent_body, headers=headers, timeout=5
            ).json()
            return str(reply["Response"].get("Error", {}).get("Code", "ok"))

        body = json.dumps({"PhoneNumberSet": ["+8613900000000"]}).encode()
        assert post("SendSms", body, body) == "ok"
        assert post("SendSms", body, body.replace(b"139", b"138")) == "AuthFailure.SignatureFailure"
        assert post("NoSuchAction", body, body) == "InvalidAction"
        assert [c.action for c in fake.calls] == ["SendSms"]


def test_console_delivery_prints_to_stderr_only(flows: Flows, capfd) -> None:
    phone = new_phone()
    with settings_env(SMS_PROVIDER="console"):
        assert flows.sms(phone).status == 200
    out, err = capfd.readouterr()
    line = next(x for x in err.splitlines() if "[dev sms" in x)
    code = line.rsplit(" ", 1)[-1]
    assert len(code) == 6 and code not in out


def test_a_console_code_is_one_write_so_concurrent_lines_never_interleave(monkeypatch) -> None:
    import sys

    from app.identity import sms_delivery

    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Stream())
    with settings_env(SMS_PROVIDER="console"):
        sms_delivery.deliver("+8613800000000", "123456")
    assert writes == ["[dev sms, not for production] +8613800000000 code 123456\n"]


def test_the_hourly_limit_per_ip_counts_an_ipv6_client_by_its_64(flows: Flows) -> None:
    # One subscriber is given a /64 and picks addresses inside it at will (privacy
    # extensions): counted per address, the limit would be no limit at all.
    with settings_env(SMS_PER_IP_PER_HOUR="2"):
        prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
        assert flows.sms(new_phone(), ip=f"{prefix}::1").status == 200
        assert flows.sms(new_phone(), ip=f"{prefix}:0:0:0:2").status == 200
        reply = flows.sms(new_phone(), ip=f"{prefix}:aaaa:bbbb:cccc:dddd")
        assert (reply.status, reply.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert flows.sms(new_phone(), ip=f"{prefix}:1::1").status == 429
        # the next /64 is another client
        other = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}::1"
        assert flows.sms(new_phone(), ip=other).status == 200


def test_an_ipv4_client_written_as_ipv6_is_counted_as_itself(flows: Flows) -> None:
    with settings_env(SMS_PER_IP_PER_HOUR="1"):
        ip = new_ip()
        assert flows.sms(new_phone(), ip=ip).status == 200
        assert flows.sms(new_phone(), ip=f"::ffff:{ip}").status == 429
