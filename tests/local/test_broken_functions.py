"""A function whose index.py does not import, in the local cloud as on SCF: its calls fail
saying so, whichever way it is called, and the other functions keep serving."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.local_cloud import TEST_CONFIGS, local_cloud, wait_for
from tests.support.logs import capture_logs

MANIFEST = """\
app: ai-platform-tests
stage: test
functions_dir: .

functions:
  ws-unloadable:
    timeout: 30
    web:
      path: /_test/unloadable
      websocket:
        idle_timeout_s: 15
"""


def test_a_web_function_that_fails_to_load_refuses_its_handshake_saying_why(
    tmp_path: Path, redis_db: Any
) -> None:
    (tmp_path / "serverless.yml").write_text(MANIFEST)
    (tmp_path / "ws-unloadable").mkdir()
    (tmp_path / "ws-unloadable" / "index.py").write_text("raise ImportError('no such layer')\n")
    with local_cloud((*TEST_CONFIGS, tmp_path / "serverless.yml")) as cloud:
        url = cloud.url.replace("http://", "ws://") + "/_test/unloadable"
        with capture_logs(logging.ERROR) as logs:
            with pytest.raises(InvalidStatus) as refused:
                connect(url, open_timeout=10).close()
            assert refused.value.response.status_code == 500
            failed = wait_for(lambda: logs.where(logger="uvicorn.error"))
        assert failed and failed[0]["exception"].endswith(
            "RuntimeError: function ws-unloadable failed to load: ImportError: no such layer"
        )
        assert requests.get(cloud.url + "/health", timeout=10).status_code == 200
