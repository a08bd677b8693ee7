"""Secrets an admin stores for pipelines to send upstream: `PUT /admin/secrets/{name}`,
`GET /admin/secrets`, and `{{secrets.NAME}}` in the `headers` of an `http` step.

This module holds what a secret's name and a reference to it look like, and loads nothing:
a pipeline definition checks its headers with it. The values live in `app.vault.store`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.crypto.resolution import SECRET_NAME

# A stored secret's name: the rule a `secret:NAME` setting follows too.
NAME = SECRET_NAME
MAX_VALUE_BYTES = 4096
# `{{secrets.<anything but a brace>}}`: a reference, well formed when what it names is NAME.
REFERENCE = re.compile(r"\{\{secrets\.([^{}]*)\}\}")


def referenced(values: Iterable[str]) -> set[str]:
    """What the `{{secrets.NAME}}` references in these strings name."""
    return {found for value in values for found in REFERENCE.findall(value)}
