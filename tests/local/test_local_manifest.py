"""Reading serverless.yml: the functions, their configuration and triggers as the deployer
and the local cloud see them, and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import manifest
from infra.local.cloud import load_manifests
from tests.support.local_cloud import TEST_CONFIGS


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serverless.yml"
    path.write_text(text)
    return path


def test_the_repository_file_and_the_test_probes_read_as_one() -> None:
    loaded = load_manifests(TEST_CONFIGS)
    health = loaded.functions["health"]
    assert health.directory == manifest.ROOT / "functions" / "health"
    assert health.http and health.runtime == "Python3.10" and health.timeout_s == 10
    assert health.environment["APP_ENV"] == "production"
    worker = loaded.functions["pipeline-worker"]
    assert worker.asynchronous == manifest.AsyncSpec(retries=2, ttl_s=21600)
    assert worker.timeout_s == 300 and not worker.http
    assert loaded.functions["db-migrate"].invoke_after_deploy
    # Locally a function is named as it is; the queue it consumes has its name.
    assert worker.environment["PIPELINE_QUEUE"] == "pipeline-worker"
    probe = loaded.functions["timer-probe"]
    assert probe.directory == manifest.ROOT / "tests" / "functions" / "timer-probe"
    timer = next(t for t in loaded.timers if t.name == "probe-disabled")
    assert (timer.function, timer.argument, timer.enabled) == (
        "timer-probe",
        "never-scheduled",
        False,
    )


def test_the_deployers_variables_name_functions_as_deployed_and_refuse_what_is_missing(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        """
app: shop
stage: ${env:STAGE}
defaults:
  environment:
    QUEUE: ${function:worker}
    SECRET: ${env:SECRET}
functions:
  worker: {async: {retries: 1, ttl_s: 60}}
""",
    )
    strict = manifest.Variables({"STAGE": "prod", "SECRET": "s"}, strict=True, deployed_names=True)
    loaded = manifest.load(path, strict)
    assert loaded.functions["worker"].environment == {
        "QUEUE": "shop-prod-worker",
        "SECRET": "s",
    }
    assert loaded.namespace == "shop-prod"
    with pytest.raises(manifest.ManifestError, match="not set: SECRET, STAGE"):
        manifest.load(path, manifest.Variables({}, strict=True, deployed_names=True))
    lenient = manifest.load(path, manifest.Variables({}))
    assert lenient.functions["worker"].environment == {
        "QUEUE": "worker",
        "SECRET": "",
    }
    assert lenient.namespace == "shop"  # no stage: the app's name alone


def test_an_optional_variable_is_left_out_while_unset(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
app: shop
stage: prod
defaults:
  environment:
    PUSH: ${env:PUSH?}
    SECRET: ${env:SECRET}
functions:
  api: {http: true}
""",
    )
    for unset in ({}, {"PUSH": ""}):
        variables = manifest.Variables({"SECRET": "s", **unset}, strict=True)
        environment = manifest.load(path, variables).functions["api"].environment
        assert environment == {"SECRET": "s"}
    variables = manifest.Variables({"SECRET": "s", "PUSH": "http://gw:9091"}, strict=True)
    environment = manifest.load(path, variables).functions["api"].environment
    assert environment == {"PUSH": "http://gw:9091", "SECRET": "s"}


@pytest.mark.parametrize(
    "text",
    [
        "- not a mapping\n",
        "app: a\nfunctions:\n  Bad_Name: {http: true}\n",
        "app: a\nfunctions:\n  t:\n    timers:\n      - {name: x}\n",
    ],
    ids=["not-a-mapping", "bad-name", "timer-without-cron"],
)
def test_files_that_cannot_be_served_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises((manifest.ManifestError, KeyError)):
        manifest.load(_write(tmp_path, text))


def test_max_instances_is_read_from_the_function_or_the_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
app: shop
defaults:
  max_instances: 3
functions:
  login: {max_instances: 20}
  worker: {max_instances: null}
  health: {}
""",
    )
    loaded = manifest.load(path)
    assert {name: spec.max_instances for name, spec in loaded.functions.items()} == {
        "login": 20,
        "worker": None,  # `null` undoes the default: not capped, not managed
        "health": 3,
    }
    for value in ("0", "-1", "1.5", "'4'", "yes"):
        path.write_text(f"app: shop\nfunctions:\n  login: {{max_instances: {value}}}\n")
        with pytest.raises(manifest.ManifestError, match=r"'login': max_instances .* is not a"):
            manifest.load(path)
