"""README "Configuration" is the operator's list of variables: it names every variable
`app.config.Settings` reads and no other (but the local cloud's own), and where it states a
default as a literal or as empty, that is the field's default."""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

from app.config import Settings
from app.config.variables import ENV_NAMES
from tests.support.functions import ROOT

# Variables the table lists that the local cloud reads itself, not Settings.
LOCAL_CLOUD_ONLY = frozenset({"LOCAL_ASYNC_CONCURRENCY"})
PARENTHESES = re.compile(r"\([^)]*\)")


def table_rows() -> list[tuple[list[str], str]]:
    """Each row of the README's configuration table: its variables and its default cell."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            rows.append((re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]), cells[-1]))
    return rows


def field_of() -> dict[str, str]:
    """Each variable Settings reads, to the field it fills."""
    return {
        variable: name
        for name in Settings.model_fields
        for variable in ENV_NAMES.get(name, (name.upper(),))
    }


def stated(part: str) -> str | None:
    """The default a part of a default cell states: its literal, "" for empty, or None for
    prose this test cannot compare (`the embedded store`)."""
    part = PARENTHESES.sub("", part).strip()
    if part.startswith("empty"):
        return ""
    literal = re.match(r"`([^`]*)`", part)
    return literal.group(1) if literal else None


def default(field: str) -> Any:
    value = Settings.model_fields[field].get_default(call_default_factory=True)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_the_table_names_every_variable_settings_reads_and_no_other() -> None:
    listed = {variable for variables, _ in table_rows() for variable in variables}
    # A field's own name: the keys SCF injects for the run role (ENV_NAMES) are in its prose.
    read = {field.upper() for field in Settings.model_fields}
    assert sorted(read - listed) == []
    assert sorted(listed - set(field_of()) - LOCAL_CLOUD_ONLY) == []


def test_each_default_the_table_states_is_the_settings_default() -> None:
    fields = field_of()
    wrong = []
    for variables, cell in table_rows():
        parts = cell.split(", ")
        if len(parts) != len(variables):
            parts = [cell] * len(variables)  # one default for all: `empty`
        for variable, part in zip(variables, parts, strict=True):
            if variable not in fields:
                continue
            literal = stated(part)
            value = default(fields[variable])
            if literal is None:
                continue
            if literal == "":
                if value not in ("", None):
                    wrong.append(f"{variable}: README empty, Settings {value!r}")
            elif type(value)(literal) != value:
                wrong.append(f"{variable}: README {literal!r}, Settings {value!r}")
    assert wrong == []
