"""The alert rules as Prometheus reads and evaluates them: promtool, the checker of the
Prometheus release the rules are written against (`make .local/bin/promtool`, README
"Alerts"), parses infra/alerts/prometheus-rules.yml whole and runs its unit tests,
infra/alerts/prometheus-rules.test.yml, in which every alert fires, with the labels and
annotations it renders, on series shaped as the Pushgateway holds them, and stays quiet on
healthy ones or below its threshold. Without promtool they skip, naming how to get it; under
REQUIRE_PROMTOOL=1 (.ci/run) they fail instead, so CI never passes without them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.functions import ROOT

ALERTS = ROOT / "infra" / "alerts"
RULES = ALERTS / "prometheus-rules.yml"
UNIT_TESTS = ALERTS / "prometheus-rules.test.yml"
PROMTOOL = ROOT / ".local" / "bin" / "promtool"


def promtool() -> str:
    """The Makefile's promtool, or one on PATH (`brew install prometheus` has it)."""
    found = str(PROMTOOL) if PROMTOOL.exists() else shutil.which("promtool")
    if found:
        return found
    reason = "no promtool: `make .local/bin/promtool` fetches it on Debian, or put one on PATH"
    if os.environ.get("REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"REQUIRE_PROMTOOL=1 and {reason}")
    pytest.skip(reason)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool's answer, its failures (on stderr) and its successes in `stdout`."""
    command = [promtool(), *map(str, args)]
    return subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, timeout=120
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def cases() -> list[dict[str, Any]]:
    """Every alert_rule_test of the unit-test file."""
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def test_promtool_parses_every_rule() -> None:
    checked = run("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout


@pytest.mark.slow  # promtool evaluates every rule each minute of 28 hours: about 10 s
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = run("test", "rules", UNIT_TESTS)
    assert tested.returncode == 0, tested.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    firing = {case["alertname"] for case in cases() if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases() if not case.get("exp_alerts")}
    names = alert_names()
    assert [name for name in names if name not in firing] == [], "no case where it fires"
    assert [name for name in names if name not in quiet] == [], "no case where it stays quiet"
    assert {case["alertname"] for case in cases()} <= set(names), "a case of no alert"


def test_a_rule_that_never_fires_or_does_not_parse_fails(tmp_path: Path) -> None:
    """The unit tests catch a threshold gone wrong (run here on SagaSweeperNotRunning's
    cases alone, to be quick), and the check a broken expression."""
    unit_tests = yaml.safe_load(UNIT_TESTS.read_text())
    unit_tests["tests"] = [
        test
        for test in unit_tests["tests"]
        if {case["alertname"] for case in test["alert_rule_test"]} == {"SagaSweeperNotRunning"}
    ]
    (tmp_path / UNIT_TESTS.name).write_text(yaml.safe_dump(unit_tests))
    text = RULES.read_text()
    (tmp_path / RULES.name).write_text(text)
    assert run("test", "rules", tmp_path / UNIT_TESTS.name).returncode == 0
    (tmp_path / RULES.name).write_text(
        text.replace("push_time_seconds < 300)", "push_time_seconds < 3000)", 1)
    )
    tested = run("test", "rules", tmp_path / UNIT_TESTS.name)
    assert tested.returncode != 0 and "SagaSweeperNotRunning" in tested.stdout, tested.stdout
    (tmp_path / RULES.name).write_text(text.replace("> 0.05", "> 0.05)", 1))
    checked = run("check", "rules", tmp_path / RULES.name)
    assert checked.returncode != 0 and "HttpServerErrors" in checked.stdout, checked.stdout
