"""`make run`'s payment sandbox, end to end, as the README walks it: on the embedded
default (a fresh SQLite file, in-process Redis, APP_ENV=local) the local cloud serves each
channel's simulator; an order's code is the simulator's pay page, whose button pays the
trade and sends a signed notification to the local cloud, which verifies it with the same
code as in production and grants the membership and the quota."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.support.local_cloud import embedded_default_env, local_cloud_process, wait_for


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_plan_is_bought_in_the_sandbox_through_the_pay_page(tmp_path: Path, channel: str) -> None:
    env = embedded_default_env(tmp_path)
    with local_cloud_process(env) as cloud:
        http = requests.Session()
        login = http.post(f"{cloud.url}/auth/wechat-login", json={"code": "buyer"}, timeout=30)
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        [plan] = http.get(f"{cloud.url}/plans", timeout=30).json()["items"]
        assert plan["id"] == "sandbox-month"

        ordered = http.post(
            f"{cloud.url}/orders",
            json={"plan_id": plan["id"], "channel": channel},
            headers=auth,
            timeout=30,
        )
        assert ordered.status_code == 201, ordered.text
        order = ordered.json()
        code = order["code_url"] if channel == "wechat" else order["qr_code"]
        assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/sandbox/pay/{order['id']}", code)

        page = http.get(code, timeout=30)
        assert page.status_code == 200 and "<form" in page.text
        paid = http.post(code, timeout=30)
        assert paid.status_code == 200, paid.text

        def settled() -> dict[str, object] | None:
            found = http.get(f"{cloud.url}/orders/{order['id']}", headers=auth, timeout=30)
            body: dict[str, object] = found.json()
            return body if body["status"] == "paid" else None

        assert wait_for(settled, timeout=10)
        me = http.get(f"{cloud.url}/users/me", headers=auth, timeout=30).json()
        assert me["membership"]["plan_id"] == plan["id"]
        assert me["quota"]["balance"] == plan["quota"]
