"""The settings' sealed variables: those holding an envelope (`enc:v1:...`, from
`make -s encrypt`) or a reference to a stored secret (`secret:NAME`) are opened
(app.crypto.resolution) before the settings exist, so nothing ever sees the sealed text. A
value that does not resolve stops the instance at load (`UnresolvedSecret`, naming the
variable and the reason, never the value), as does one in any variable that is not
SEALABLE, which would otherwise be taken as its own value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from app.config.refusals import UnresolvedSecret
from app.config.variables import ENVELOPE_NAMES, SEALABLE
from app.crypto import is_sealed

if TYPE_CHECKING:
    from app.crypto.providers import CryptoSettings

MISPLACED = (
    "holds an envelope or a secret: reference, which only a key or secret variable may "
    "(this one would be read as the text itself)"
)


def opened(
    settings: CryptoSettings,
    database_url: str,
    read: Mapping[str, tuple[str, str]],
    *,
    timeout_s: float,
) -> dict[str, str]:
    """The value of each field whose variable (in `read`: field -> variable, text) is
    sealed, by field, within `timeout_s` in all; empty when none is. UnresolvedSecret naming
    every one that does not resolve, and every misplaced one, at once. `settings` are those
    read as they are, which say how to open envelopes."""
    # An envelope or a reference where none is opened would be taken as the value
    # itself: an instance signing or calling with `enc:v1:...` instead of stopping.
    misplaced = [v for name, (v, text) in read.items() if name not in SEALABLE and is_sealed(text)]
    sealed = {v: text for name, (v, text) in read.items() if name in SEALABLE and is_sealed(text)}
    if not sealed and not misplaced:
        return {}
    from app.crypto import resolution  # cold start: only when a variable is sealed

    if settings.crypto_provider == "kms" and "tencentcloud_secret_key" in read:
        variable, text = read["tencentcloud_secret_key"]
        if is_sealed(text):
            raise UnresolvedSecret(
                f"refusing to start: {variable}: cannot be sealed with CRYPTO_PROVIDER=kms "
                "(KMS is called with it)"
            )
    problems = dict.fromkeys(misplaced, MISPLACED)
    values: dict[str, str] = {}
    try:
        if sealed:
            values = resolution.resolve(
                sealed, settings, database_url, timeout_s=timeout_s, contexts=ENVELOPE_NAMES
            )
    except resolution.Unresolved as error:
        problems.update(error.problems)
    if problems:
        raise UnresolvedSecret(f"refusing to start: {resolution.Unresolved(problems)}")
    field_of = {v: name for name, (v, _) in read.items()}
    return {field_of[v]: value for v, value in values.items()}
