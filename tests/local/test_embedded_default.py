"""`make run`'s embedded default (a fresh SQLite file, in-process Redis, moto's S3 app as
COS): an upload through its presigned PUT, named by a task, and a large output served as
StoredOutput whose URL answers the exact JSON; no access token in its output; and what a second
run after Ctrl-C keeps (README "What `make run` gives")."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.local_cloud import embedded_default_env, local_cloud_process, wait_for


def test_uploads_and_stored_outputs_work_on_the_embedded_default(tmp_path: Path) -> None:
    env = embedded_default_env(tmp_path, SIGNUP_QUOTA="5")
    with local_cloud_process(env) as cloud:
        http = requests.Session()
        login = http.post(f"{cloud.url}/auth/wechat-login", json={"code": "maker"}, timeout=30)
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        data = b"plain text to work on\n"
        made = http.post(
            f"{cloud.url}/uploads",
            json={"content_type": "text/plain", "size_bytes": len(data)},
            headers=auth,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        upload = made.json()
        put = http.put(upload["url"], data=data, headers=upload["headers"], timeout=30)
        assert put.status_code == 200, put.text

        task_input = {"file": upload["key"], "notes": "x" * 20_000}
        created = http.post(
            f"{cloud.url}/tasks",
            json={"pipeline_id": "demo", "input": {**task_input, "prompts": ["a"]}},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]

        def ended() -> dict[str, object] | None:
            body = http.get(f"{cloud.url}/tasks/{task_id}", headers=auth, timeout=30).json()
            return body if body["status"] in ("succeeded", "failed") else None

        task = wait_for(ended, timeout=30)
        assert task and task["status"] == "succeeded", task
        stored = [
            s["output"]
            for s in task["steps"]
            if isinstance(s["output"], dict) and s["output"].get("stored")
        ]
        assert stored, task["steps"]
        fetched = http.get(stored[0]["url"], timeout=30)
        assert fetched.status_code == 200 and len(fetched.content) == stored[0]["size_bytes"]


def test_make_run_writes_no_access_token_of_a_websocket_to_its_output(tmp_path: Path) -> None:
    """uvicorn names a WebSocket's path with its query string at INFO: the local cloud, like
    scf_bootstrap, keeps it to warnings, so `/ws?token=...` never reaches a log line."""
    from websockets.sync.client import connect

    with local_cloud_process(embedded_default_env(tmp_path, LOG_LEVEL="INFO")) as cloud:
        login = requests.post(f"{cloud.url}/auth/wechat-login", json={"code": "ws"}, timeout=30)
        token = login.json()["access_token"]
        ws_url = cloud.url.replace("http://", "ws://") + f"/ws?token={token}"
        with connect(ws_url, open_timeout=10) as ws:
            ws.send('{"type": "ping"}')
            assert "pong" in str(ws.recv(timeout=10))
        output = "".join(cloud.output)
    assert "invocation" in output  # the app's own INFO lines are there
    assert token not in output


def test_a_second_run_keeps_the_database_and_starts_redis_and_cos_empty(tmp_path: Path) -> None:
    """The README's promise to a developer who stops `make run` and starts it again: the
    SQLite file carries users, quota and tasks over; the sessions (in-process Redis) and the
    uploads (the in-process COS store) do not."""
    env = embedded_default_env(tmp_path, SIGNUP_QUOTA="5")
    with local_cloud_process(env) as cloud:
        url = cloud.url
        login = requests.post(f"{url}/auth/wechat-login", json={"code": "twice"}, timeout=30)
        assert login.status_code == 200, login.text
        user_id = login.json()["user"]["id"]
        first = {"Authorization": f"Bearer {login.json()['access_token']}"}
        made = requests.post(
            f"{url}/uploads",
            json={"content_type": "text/plain", "size_bytes": 2},
            headers=first,
            timeout=30,
        )
        upload = made.json()
        put = requests.put(upload["url"], data=b"hi", headers=upload["headers"], timeout=30)
        assert put.status_code == 200, put.text
        task = requests.post(
            f"{url}/tasks", json={"pipeline_id": "demo", "input": {}}, headers=first, timeout=30
        )
        assert task.status_code == 201, task.text
        assert cloud.stop() == 0, "".join(cloud.output[-20:])

    with local_cloud_process(env) as cloud:
        url = cloud.url
        stale = requests.get(f"{url}/users/me", headers=first, timeout=30)
        assert (stale.status_code, stale.json()["code"]) == (401, "AUTH_SESSION_ENDED")

        again = requests.post(f"{url}/auth/wechat-login", json={"code": "twice"}, timeout=30)
        assert again.status_code == 200, again.text
        body = again.json()
        assert (body["user"]["id"], body["is_new_user"]) == (user_id, False)
        assert body["user"]["quota"]["balance"] == 4  # 5 granted, 1 spent by the task
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        listed = requests.get(f"{url}/tasks", headers=auth, timeout=30).json()
        assert [t["id"] for t in listed["items"]] == [task.json()["id"]]

        named = requests.post(
            f"{url}/tasks",
            json={"pipeline_id": "demo", "input": {"file": upload["key"]}},
            headers=auth,
            timeout=30,
        )
        assert (named.status_code, named.json()["code"]) == (422, "UPLOAD_INVALID")
