"""The alert rules (infra/alerts/prometheus-rules.yml), the CLS alarms
(infra/alerts/cls-alarms.yml) and the runbook (docs/runbook.md) name only what exists: every
metric and label a rule reads is exported (or set by the push), every job a job's label
names is in the admin jobs table, every log message an alarm reads is a line shared/app
writes, every alert and alarm leads to a section of the runbook, and every `make` target,
job and section the runbook names is there. Prometheus's own checker parses and evaluates the
rules (test_alert_rules_promtool.py); what it cannot know, the names the code exports and the
values ours to spell, is checked here. It also checks a rule's keys, durations and brackets,
so this file no longer does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.api import all_routes
from app.api.admin_jobs import JOBS
from app.errors import ErrorCode
from app.runner.sweeper import COUNTS
from tests.support.functions import ROOT
from tests.support.promql import (
    GROUPING,
    PUSHGATEWAY,
    label_names,
    labels_of,
    matchers,
    metric_names,
)

RULES = ROOT / "infra" / "alerts" / "prometheus-rules.yml"
ALARMS = ROOT / "infra" / "alerts" / "cls-alarms.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
SEVERITIES = {"page", "ticket"}
# Label values that are ours to spell, by label: a typo matches nothing and never fires.
VALUES = {"job_name": set(JOBS), "kind": set(COUNTS) | {"scanned", "deleted"}}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def alarms() -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = load(ALARMS)["alarms"]
    return alarms


def sections() -> set[str]:
    """The anchors of the runbook's headings, as GitHub makes them."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def section_problems(runbook: str) -> list[str]:
    path, _, anchor = runbook.partition("#")
    if path != "docs/runbook.md":
        return [f"runbook {runbook!r} is not docs/runbook.md#<section>"]
    return [] if anchor in sections() else [f"no runbook section #{anchor}"]


def expr_problems(expr: str) -> list[str]:
    """What a rule's expression names that the code does not export."""
    known = {**labels_of(), **PUSHGATEWAY}
    problems = []
    names = metric_names(expr)
    if not names:
        problems.append("reads no metric")
    problems += [f"metric {name} is not exported" for name in sorted(names - set(known))]
    allowed = set(GROUPING).union(*(known.get(name, ()) for name in names))
    problems += [
        f"label {label} is not on {sorted(names)}" for label in label_names(expr) - allowed
    ]
    for label, value in matchers(expr):
        spelled = VALUES.get(label)
        if spelled is not None and value not in spelled:
            problems.append(f"{label}={value!r} is none of {sorted(spelled)}")
    return problems


def rule_problems(rule: dict[str, Any]) -> list[str]:
    problems = []
    if not re.fullmatch(r"[A-Z][A-Za-z]+", str(rule.get("alert"))):
        problems.append("alert is not a CamelCase name")
    if rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append("severity is not page or ticket")
    annotations = rule.get("annotations", {})
    if not annotations.get("summary"):
        problems.append("no summary")
    return problems + section_problems(annotations.get("runbook", "")) + expr_problems(rule["expr"])


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_names_what_the_code_exports_and_its_runbook_section(
    rule: dict[str, Any],
) -> None:
    assert rule_problems(rule) == []


def test_a_planted_typo_is_caught() -> None:
    (rule,) = [rule for rule in rules() if rule["alert"] == "SagaSweeperNotRunning"]
    for planted, expected in [
        (("job_runs_total", "job_run_total"), "metric job_run_total is not exported"),
        (('job_name="saga-sweeper"', 'job_name="saga-sweper"'), "job_name='saga-sweper'"),
        (("job_name=", "job="), None),  # the grouping key's job is on every pushed series
        (("job_name=", "jobname="), "label jobname is not on"),
        (("on (instance)", "on (instanse)"), "label instanse is not on"),
    ]:
        typo = {**rule, "expr": rule["expr"].replace(*planted)}
        found = " | ".join(rule_problems(typo))
        if expected is None:
            assert "label job " not in found, found
        else:
            assert expected in found, (planted, found)
    no_section = {**rule, "annotations": {**rule["annotations"], "runbook": "docs/runbook.md#nope"}}
    assert rule_problems(no_section) == ["no runbook section #nope"]


def test_every_timer_job_has_an_alert_for_when_it_stops() -> None:
    manifest = load(ROOT / "serverless.yml")
    timed = {name for name, spec in manifest["functions"].items() if spec.get("timers")}
    watched = {
        value
        for rule in rules()
        if rule["expr"].lstrip().startswith("absent(")
        for label, value in matchers(rule["expr"])
        if label == "job_name"
    }
    assert timed == watched


def app_source() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "shared" / "app").rglob("*.py"))


@pytest.mark.parametrize("alarm", alarms(), ids=lambda alarm: alarm["name"])
def test_every_cls_alarm_reads_lines_the_code_writes(alarm: dict[str, Any]) -> None:
    assert set(alarm) == {"name", "query", "messages", "period", "condition", "severity", "runbook"}
    assert alarm["severity"] in SEVERITIES
    assert section_problems(alarm["runbook"]) == []
    quoted = re.findall(r'message:"([^"]+)"', alarm["query"])
    assert sorted(set(quoted)) == sorted(alarm["messages"]), "the query and `messages` differ"
    source = app_source()
    for message in alarm["messages"]:
        assert f'"{message}"' in source, f"no line of shared/app is {message!r}"
    paths = {route.path for route in all_routes()}
    named = set(re.findall(r'route:"([^"]+)"', alarm["query"]))
    assert named <= paths, f"no route is {sorted(named - paths)}"
    codes = set(re.findall(r'error:"([^"]+)"', alarm["query"]))
    assert codes <= {code.value for code in ErrorCode}, "an error code that is none of ours"


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_the_runbook_names_only_targets_jobs_and_sections_that_exist() -> None:
    text = RUNBOOK.read_text()
    code = "\n".join(re.findall(r"```.*?```|`[^`\n]+`", text, re.DOTALL))
    targets = set(re.findall(r"\bmake (?:-s )?([a-z][a-z0-9-]*)", code))
    assert targets and targets <= make_targets(), sorted(targets - make_targets())
    jobs = set(re.findall(r"/admin/jobs/([a-z][a-z-]*)", text))
    jobs |= set(re.findall(r'job_name="([^"]+)"', text))
    assert jobs and jobs <= set(JOBS), sorted(jobs - set(JOBS))
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links <= sections(), sorted(links - sections())
    messages = set(re.findall(r'message:"([^"]+)"', text))
    source = app_source()
    assert [message for message in messages if f'"{message}"' not in source] == []


def test_every_alert_and_alarm_is_named_in_its_runbook_section() -> None:
    text = RUNBOOK.read_text()
    named = {rule["alert"]: rule["annotations"]["runbook"] for rule in rules()}
    named.update({alarm["name"]: alarm["runbook"] for alarm in alarms()})
    for name, runbook in named.items():
        anchor = runbook.partition("#")[2]
        body = next(
            part
            for part in re.split(r"^## ", text, flags=re.MULTILINE)
            if re.sub(r"[^\w\- ]", "", part.splitlines()[0].strip().lower()).replace(" ", "-")
            == anchor
        )
        assert f"`{name}`" in body.replace("\n", " "), f"{name} is not named in #{anchor}"


def test_the_readme_leads_to_the_runbook() -> None:
    assert "(docs/runbook.md)" in (ROOT / "README.md").read_text()
