"""Mainland China mobile numbers: the one accepted spelling in, `+86` E.164 out."""

from __future__ import annotations

import re

# 11 digits, first 1, second 3-9 (every mainland mobile range), optional +86 / 86 prefix.
# ASCII digits only: `\d` would also take fullwidth and other scripts' digits, which would
# make one phone many different strings (keys of counters, codes and rows).
_MAINLAND = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")
_SEPARATORS = re.compile(r"[\s\-]")


def normalize(raw: str) -> str | None:
    """`+8613800138000` for any accepted spelling, None for anything else."""
    found = _MAINLAND.fullmatch(_SEPARATORS.sub("", raw or ""))
    return f"+86{found.group(1)}" if found else None


def admin_phones(setting: str) -> frozenset[str]:
    """ADMIN_PHONES normalised; entries that are not phones are ignored."""
    phones = (normalize(item.strip()) for item in setting.split(","))
    return frozenset(p for p in phones if p)
