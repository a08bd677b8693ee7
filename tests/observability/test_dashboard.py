"""infra/grafana/dashboard.json names only metrics the code exports: every metric in every
panel's PromQL (and in the template variables' queries) is a series
`app.observability.metrics` exposes, with the suffixes the exposition adds, so renaming a
metric without its panels fails here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.functions import ROOT
from tests.support.promql import exported, metric_names

DASHBOARD = ROOT / "infra" / "grafana" / "dashboard.json"


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row holds its panels


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queried() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every template variable query."""
    found = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            # label_values(metric, label): the label is not a metric
            found.append((f"variable {variable['name']!r}", re.sub(r",[^,)]*\)$", ")", text)))
    return found


def test_the_extraction_finds_metrics_and_nothing_else() -> None:
    assert metric_names(
        "histogram_quantile(0.95, sum by (function, le) "
        '(rate(http_request_duration_seconds_bucket{function=~"$function"}[$__rate_interval])))'
    ) == {"http_request_duration_seconds_bucket"}
    assert metric_names(
        'sum(rate(a_total{status=~"5.."}[5m] offset 1h)) by (job) / ignoring(x) b_total '
        'and on (instance) (time() - c_seconds > 1e3) or label_replace(d, "x", "$1", "y", "(.*)")'
    ) == {"a_total", "b_total", "c_seconds", "d"}
    assert metric_names("label_values(http_requests_total)") == {"http_requests_total"}


def test_a_renamed_metric_is_caught() -> None:
    assert metric_names("sum(rate(http_request_total[5m]))") - exported() == {"http_request_total"}


def test_every_panel_queries_prometheus() -> None:
    drawn = [panel for panel in panels(dashboard()) if panel["type"] != "row"]
    assert drawn
    for panel in drawn:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"


@pytest.mark.parametrize(("where", "expr"), queried())
def test_every_metric_the_dashboard_names_is_exported(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where} reads no metric: {expr}"
    assert names <= exported(), f"{where} names {sorted(names - exported())}, not exported"


def test_the_counters_recorded_ahead_of_their_code_have_panels() -> None:
    named = set().union(*(metric_names(expr) for _, expr in queried()))
    assert {
        "payments_notifications_total",
        "orders_total",
        "cos_cleanup_deleted_objects_total",
        "cos_cleanup_deleted_bytes_total",
    } <= named
