"""The contract's route table (../shared/API.md, beside the repository in CI and on a
laptop), read once for the tests that hold the code to it."""

from __future__ import annotations

import re

import pytest

from tests.support.functions import ROOT

API_MD = ROOT.parent / "shared" / "API.md"
# A row of the route table: its routes (`GET /openapi.json, GET /docs` names two), then its
# auth column.
_ROW = re.compile(r"^\| ((?:GET|POST|PUT|PATCH|DELETE) [^|]+?) \| ([^|]+?) \|", re.M)


def route_table() -> dict[tuple[str, str], str]:
    """Each `(METHOD, /path)` of the route table with its auth column's words (`-`, `user`,
    `admin`, ...). Skips the test when the contract is not there."""
    if not API_MD.is_file():
        pytest.skip(f"the contract is not beside the repository ({API_MD})")
    table: dict[tuple[str, str], str] = {}
    for named, auth in _ROW.findall(API_MD.read_text()):
        for route in named.split(", "):
            method, path = route.split(" ", 1)
            table[(method, path)] = auth
    return table
