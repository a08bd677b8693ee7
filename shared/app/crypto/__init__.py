"""Envelope encryption of secrets (`enc:v1:...`) and references to stored secrets
(`secret:NAME`): what lets a key or secret variable hold something other than its value.

- `envelopes`: the format, `seal` and `open` (AES-256-GCM under a fresh data key, the
  context bound as associated data);
- `providers`: where data keys come from (`kms`: Tencent Cloud KMS; `local`:
  LOCAL_MASTER_KEY, for laptops and tests) and the per-process cache of unwrapped ones;
- `resolution`: the values of the variables that hold envelopes or references, once per
  instance, for app.config.

A base package: it reads no settings of its own (what it needs is passed in) and imports
nothing above it. Importing it costs nothing: `cryptography` and the KMS SDK are imported
by the functions that use them, so a function whose settings hold no envelope never loads
them.
"""

from __future__ import annotations

# What a sealed value begins with: an envelope (any version, so a newer one is refused by
# name rather than taken as a plain value) or a reference to the secrets table.
ENVELOPE_MARK = "enc:"
REFERENCE_MARK = "secret:"


def is_sealed(value: str) -> bool:
    """Whether a variable's value stands for another: an envelope or a reference."""
    return value.startswith((ENVELOPE_MARK, REFERENCE_MARK))
