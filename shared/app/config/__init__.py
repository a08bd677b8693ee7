"""Settings: one object, read from the environment once per instance (`get_settings`).

- `settings`: the object, `Settings`, one field per variable of the configuration table;
- `variables`: which variables the fields are read from, and which may be sealed;
- `sealed`: opening the variables that hold an envelope (`enc:v1:...`, from
  `make -s encrypt`) or a `secret:` reference, before the settings exist, so nothing ever
  sees the sealed text; one that does not resolve stops the instance at load;
- `production`: the guard that refuses `APP_ENV=production` while a dev default is in
  effect; `defaults`: those known, public values;
- `refusals`: the errors an instance refuses to start with, said without a value.

This package's face is what the rest of the layer uses: `get_settings`, `Settings`, the
two refusals and `without_values` (a ValidationError said without its values).
"""

from __future__ import annotations

import functools

from app.config import production
from app.config.refusals import ProductionMisconfigured, UnresolvedSecret, without_values
from app.config.settings import Settings

__all__ = [
    "ProductionMisconfigured",
    "Settings",
    "UnresolvedSecret",
    "get_settings",
    "without_values",
]


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings.from_environ()
    production.refuse_unfit(settings)
    return settings
