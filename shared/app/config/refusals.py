"""What an instance refuses to start with, said without a value: the settings' errors."""

from __future__ import annotations

from pydantic import ValidationError


class ProductionMisconfigured(RuntimeError):
    # Named as the package exports it: the line SCF logs when an instance refuses to start
    # reads `app.config.<error>: ...`, as README shows operators.
    __module__ = "app.config"


class UnresolvedSecret(ProductionMisconfigured):
    """A variable's envelope or reference does not resolve: the instance does not start.
    The message names each such variable and why, never a value."""

    __module__ = "app.config"


def without_values(error: ValidationError) -> str:
    """What pydantic refused, by variable, without the values: its own message quotes
    them, and an opened secret was sealed for a reason."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )
