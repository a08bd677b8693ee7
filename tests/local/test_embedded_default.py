"""`make run`'s embedded default (a fresh SQLite file, in-process Redis, moto's S3 app as
COS): an upload through its presigned PUT, named by a task, and a large output served as
StoredOutput whose URL answers the exact JSON; and no access token in its output."""

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
