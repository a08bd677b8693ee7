"""README "The invocation's log line" lists the counters a log line's `metrics.*` fields come
from: every counter `app.observability.metrics` declares, with its labels in their order, but
the HTTP request count (the line's own fields), so an operator indexing CLS fields or
writing an alarm finds each one, and a counter added or relabelled without its row fails
here."""

from __future__ import annotations

import re

from app.observability import metrics
from app.observability.instruments import Counter
from tests.support.functions import ROOT

# Its numbers are the line's own fields (`route`, `status`), not a `metrics.*` field.
NOT_TALLIED = {metrics.HTTP_REQUESTS.name}


def table() -> dict[str, tuple[str, ...]]:
    """Each counter the README's table names, to the labels its row gives."""
    section = (ROOT / "README.md").read_text().split("\n### The invocation's log line\n", 1)[1]
    section = section.split("\n### ", 1)[0]
    rows = section.split("\n| counter | labels, in order | moved by |\n", 1)[1]
    listed: dict[str, tuple[str, ...]] = {}
    for line in rows.splitlines()[1:]:
        if not line.startswith("|"):
            break
        names, labels = (cell.strip() for cell in line.strip("|").split(" | ")[:2])
        for name in re.findall(r"`([a-z_]+)`", names):
            listed[name] = tuple(re.findall(r"`([a-z_]+)`", labels))
    return listed


def declared() -> dict[str, tuple[str, ...]]:
    return {
        instrument.name: instrument.labelnames
        for instrument in vars(metrics).values()
        if isinstance(instrument, Counter) and instrument.name not in NOT_TALLIED
    }


def test_the_table_lists_every_tallied_counter_with_its_labels_in_order() -> None:
    assert table() == declared()
