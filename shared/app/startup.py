"""An instance's start: its settings, read once when a function module is imported, and
its JSON log lines configured from them.

An instance that refuses its settings (a secret that does not resolve within
SECRETS_LOAD_TIMEOUT_S, a production misconfiguration, a value not valid for its setting,
sealed or not) writes one JSON line, `instance refused to start`, naming the function and
the reason, before the error stops its initialisation. Without it only SCF's plain-text init
failure shows, which no CLS alarm reads. The reason names variables, never a value
(`app.config.refusals`)."""

from __future__ import annotations

import logging
import os

from pydantic import ValidationError

from app.config import ProductionMisconfigured, Settings, get_settings, without_values
from app.observability import logging as applog

log = applog.get_logger("app.startup")


def instance_settings() -> Settings:
    """This instance's settings, with logging configured: every adapter's first step."""
    try:
        settings = get_settings()
    # A ValidationError: a value in the environment itself not valid for its setting (one
    # that was sealed is an UnresolvedSecret once opened).
    except (ProductionMisconfigured, ValidationError) as refused:
        applog.configure()  # no settings to take the level from: an ERROR passes any level
        applog.log_fields(
            log,
            logging.ERROR,
            "instance refused to start",
            # Not bound yet: SCF names the function in the instance's environment.
            function=os.environ.get("SCF_FUNCTIONNAME", ""),
            error=type(refused).__name__,
            reason=(
                without_values(refused) if isinstance(refused, ValidationError) else str(refused)
            ),
        )
        raise
    applog.configure(settings.log_level)
    return settings
