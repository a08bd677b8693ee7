"""What a PromQL expression names: its metrics and the label names it matches or groups by,
checked by the dashboard's and the alert rules' tests against what
`app.observability.metrics` exports, which promtool (it parses and evaluates the alert
rules, test_alert_rules_promtool.py) cannot know. Read by patterns, not parsed."""

from __future__ import annotations

import re

from app.observability import metrics
from app.observability.instruments import Counter, Gauge, Histogram

# Words of PromQL that look like names and are not metrics.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
NAME = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# The Pushgateway's grouping key, set on every pushed series (app.observability.push), and
# its own series: the time of each group's last push.
GROUPING = ("job", "function", "instance")
PUSHGATEWAY = {"push_time_seconds": GROUPING, "push_failure_time_seconds": GROUPING}


def exported() -> set[str]:
    """The series names `app.observability.metrics` exposes."""
    return set(labels_of())


def labels_of() -> dict[str, tuple[str, ...]]:
    """Each exported series name to its label names (a histogram's `_bucket` with `le`)."""
    found: dict[str, tuple[str, ...]] = {}
    for instrument in vars(metrics).values():
        if isinstance(instrument, (Counter, Gauge)):
            found[instrument.name] = tuple(instrument.labelnames)
        elif isinstance(instrument, Histogram):
            for suffix in ("_count", "_sum"):
                found[f"{instrument.name}{suffix}"] = tuple(instrument.labelnames)
            found[f"{instrument.name}_bucket"] = (*instrument.labelnames, "le")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label
    matchers, ranges and label lists are gone, less functions (followed by `(`) and
    keywords."""
    text = STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = LABEL_LISTS.sub(" ", text)
    return {
        found.group()
        for found in NAME.finditer(text)
        if found.group() not in KEYWORDS and not text[found.end() :].lstrip().startswith("(")
    }


def matchers(expr: str) -> list[tuple[str, str]]:
    """(label, value) of every label matcher inside `{...}`."""
    found = []
    for braces in re.findall(r"\{([^}]*)\}", expr):
        found.extend(MATCHER.findall(braces))
    return found


def label_names(expr: str) -> set[str]:
    """Every label name the expression matches on or groups by."""
    text = STRINGS.sub('""', expr)
    named = {label for label, _ in matchers(expr)}
    for listed in LABEL_LISTS.findall(text):
        named.update(name.strip() for name in listed.split(",") if name.strip())
    return named
