"""One user's journey over real HTTP through the local cloud (serverless.yml's routes, each
function loaded as SCF would), against MariaDB, Redis and the fake SMS and WeChat APIs."""

from __future__ import annotations

import secrets
from typing import Any

import requests

from app.identity import sms
from app.redis_client import get_redis
from tests.identity.conftest import PASSWORD, Flows, new_phone
from tests.support.local_cloud import local_cloud
from tests.support.settings import settings_env


def test_a_user_journey_through_the_local_cloud(flows: Flows) -> None:
    admin_phone = new_phone()
    with settings_env(ADMIN_PHONES=admin_phone), local_cloud(timers=False) as cloud:
        http = requests.Session()

        def api(
            method: str, path: str, token: str | None = None, **kwargs: Any
        ) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            reply = http.request(method, cloud.url + path, headers=headers, timeout=30, **kwargs)
            assert reply.headers.get("X-Request-Id")
            return reply

        def code_for(phone: str, purpose: str) -> str:
            get_redis().delete(sms.cooldown_key(phone))  # as if the minute had passed
            reply = api("POST", "/auth/sms-code", json={"phone": phone, "purpose": purpose})
            assert reply.status_code == 200, reply.text
            return flows.last_code(phone)

        phone = new_phone()
        code = code_for(phone, "register")
        reply = api(
            "POST", "/auth/register", json={"phone": phone, "password": PASSWORD, "code": code}
        )
        assert reply.status_code == 201, reply.text
        pair = reply.json()
        assert pair["is_new_user"] is True

        me = api("GET", "/users/me", pair["access_token"])
        assert me.status_code == 200 and me.json()["phone"] == phone
        patched = api("PATCH", "/users/me", pair["access_token"], json={"nickname": "Lin"})
        assert patched.json()["nickname"] == "Lin"
        assert api("GET", "/users/me", pair["access_token"]).json()["nickname"] == "Lin"

        rotated = api("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200
        again = api("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert again.json()["refresh_token"] == rotated.json()["refresh_token"]
        fresh = rotated.json()

        assert api("POST", "/auth/logout", fresh["access_token"], json={}).status_code == 204
        ended = api("POST", "/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert (ended.status_code, ended.json()["code"]) == (401, "AUTH_REFRESH_INVALID")

        bad = api("POST", "/auth/login", json={"phone": phone, "password": "wrong password"})
        assert (bad.status_code, bad.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
        login = api("POST", "/auth/login", json={"phone": phone, "password": PASSWORD})
        assert login.status_code == 200
        code_login = api(
            "POST", "/auth/login", json={"phone": phone, "code": code_for(phone, "login")}
        )
        assert code_login.status_code == 200
        assert (
            api("POST", "/auth/logout-all", login.json()["access_token"], json={}).status_code
            == 204
        )
        gone = api(
            "POST", "/auth/refresh", json={"refresh_token": code_login.json()["refresh_token"]}
        )
        assert gone.json()["code"] == "AUTH_REFRESH_INVALID"

        wx_code, openid = "wx-" + secrets.token_hex(6), "o" + secrets.token_hex(10)
        flows.wechat.code(wx_code, openid=openid)
        wx = api(
            "POST",
            "/auth/wechat-login",
            json={"code": wx_code, "invite_code": pair["user"]["invite_code"]},
        )
        assert wx.status_code == 200 and wx.json()["user"]["referrer_id"] == pair["user"]["id"]

        admin = api(
            "POST",
            "/auth/register",
            json={
                "phone": admin_phone,
                "password": PASSWORD,
                "code": code_for(admin_phone, "register"),
            },
        ).json()
        assert admin["user"]["role"] == "admin"
        token = admin["access_token"]
        listed = api("GET", "/admin/users", token, params={"phone": phone})
        assert [u["id"] for u in listed.json()["items"]] == [pair["user"]["id"]]
        disabled = api(
            "PATCH", f"/admin/users/{pair['user']['id']}", token, json={"disabled": True}
        )
        assert disabled.status_code == 200
        refused = api("POST", "/auth/login", json={"phone": phone, "password": PASSWORD})
        assert (refused.status_code, refused.json()["code"]) == (403, "ACCOUNT_DISABLED")
        forbidden = api("GET", "/admin/users", wx.json()["access_token"])
        assert forbidden.status_code == 403

        if "admin-jobs-run" in cloud.manifest.functions:
            job = api("POST", "/admin/jobs/invite-refill", token)
            assert job.status_code == 200 and job.json()["job"] == "invite-refill"

        report = cloud.fire_timer("invite-refill")
        assert report["job"] == "invite-refill"
