"""README "Why each runtime dependency" gives the reason for every package requirements.txt
pins into the layer and for no other, and a version it quotes is one requirements.txt pins,
so a dependency added, dropped or moved without its row fails here."""

from __future__ import annotations

import re

from tests.support.functions import ROOT

VERSION = re.compile(r"\b\d+\.\d+\.\d+\b")


def rows() -> dict[str, str]:
    """Each package the table names, to the reason its row gives."""
    section = (ROOT / "README.md").read_text().split("\n## Why each runtime dependency\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            names, why = line.strip().strip("|").split(" | ", 1)
            for name in re.findall(r"`([A-Za-z0-9_.-]+)`", names):
                table[name.lower()] = why
    return table


def pins() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pinned[name.lower()] = version
    return pinned


def test_the_table_names_every_runtime_requirement_and_no_other() -> None:
    assert sorted(rows()) == sorted(pins())


def test_each_version_the_table_quotes_is_a_pin() -> None:
    pinned = set(pins().values())
    quoted = {(name, version) for name, why in rows().items() for version in VERSION.findall(why)}
    assert quoted, "the table quotes no version: this test no longer checks anything"
    assert sorted((name, v) for name, v in quoted if v not in pinned) == []
