"""Reading the deploy files: what the local cloud would serve, and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import manifest
from tests.support.local_cloud import TEST_CONFIGS


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_repository_files_declare_every_function_their_triggers_name() -> None:
    loaded = manifest.load(TEST_CONFIGS)
    assert loaded.check() == []
    assert loaded.functions["health"].directory == manifest.ROOT / "functions" / "health"
    assert manifest.ApiRoute("/health", "GET", "health") in loaded.routes
    # The test file's WebSocket API replaces the deployed one on the same path.
    assert loaded.websockets["/ws"].register == "ws-probe-register"
    timer = next(t for t in loaded.timers if t.name == "probe-disabled")
    assert (timer.function, timer.argument, timer.enabled) == (
        "timer-probe",
        "never-scheduled",
        False,
    )
    assert manifest.QueueSpec("local-test-probe", "queue-probe") in loaded.queues


def test_a_trigger_naming_an_undeclared_function_is_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "serverless.yml",
        """
component: multi-scf
inputs:
  src: ./fns
  functions:
    a: {handler: index.main_handler}
  triggers:
    - type: cmq
      function: ghost
      parameters: {name: q}
    - type: apigw
      function: a
      parameters:
        apis:
          - {path: /a}
""",
    )
    loaded = manifest.load([path])
    assert loaded.functions["a"].directory == tmp_path / "fns" / "a"
    assert loaded.routes == [manifest.ApiRoute("/a", "ANY", "a")]
    assert loaded.check() == ["cmq q: function 'ghost' is not declared"]


@pytest.mark.parametrize(
    "text",
    [
        "component: scf\ninputs: {}\n",
        "- not a mapping\n",
        "component: multi-scf\ninputs:\n  triggers:\n    - {type: timer, function: a}\n",
        "component: multi-scf\ninputs:\n  triggers:\n    - {type: cmq, function: a}\n",
        "component: apigateway\ninputs:\n  endpoints:\n    - {path: /ws, protocol: WEBSOCKET}\n",
    ],
)
def test_files_the_local_cloud_cannot_serve_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(manifest.ManifestError):
        manifest.load([_write(tmp_path, "bad.yml", text)])
