"""Which environment variables the settings are read from, and which of them may hold an
envelope or a `secret:` reference in place of their value."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from app.crypto import REFERENCE_MARK

# Fields read from other variables than their own upper-cased name, first found wins: the
# explicit keys, or the temporary ones SCF injects for the function's run role.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "tencentcloud_secret_id": ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRETID"),
    "tencentcloud_secret_key": ("TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SECRETKEY"),
    "tencentcloud_session_token": ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_SESSIONTOKEN"),
}

# The fields whose variables may hold an envelope or a `secret:` reference: every key or
# secret the settings hold, and the providers' public keys (PEM, too long to fit SCF's
# 4 KB of variables otherwise). Not LOCAL_MASTER_KEY (it opens the
# others) nor the run role's session token (SCF sets it).
SEALABLE = frozenset(
    {
        "database_url",
        "redis_url",
        "jwt_secret",
        "jwt_previous_secret",
        "wechat_secret",
        "tencentcloud_secret_key",
        "metrics_token",
        "metrics_pushgateway_url",
        "wechatpay_private_key",
        "wechatpay_apiv3_key",
        "wechatpay_public_key",
        "alipay_private_key",
        "alipay_public_key",
    }
)

# A variable whose envelopes are sealed for another variable's name, whose value it takes
# over: while signing keys rotate JWT_PREVIOUS_SECRET holds what JWT_SECRET held, and an
# envelope moves there as it is (nobody need open it to seal it again; README "Secrets and
# KMS"). Both hold the same kind of secret, so nothing is lost by the move.
ENVELOPE_NAMES = {"JWT_PREVIOUS_SECRET": "JWT_SECRET"}

# The variables those fields are read from: the names `make -s encrypt` seals for.
SEALABLE_VARIABLES = frozenset(
    variable for name in SEALABLE for variable in ENV_NAMES.get(name, (name.upper(),))
)


def read(environ: Mapping[str, str], fields: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each of `fields` that `environ` sets, to the variable it was read from and its text."""
    found: dict[str, tuple[str, str]] = {}
    for name in fields:
        for variable in ENV_NAMES.get(name, (name.upper(),)):
            if variable in environ:
                found[name] = (variable, environ[variable])
                break
    return found


def platform_secrets(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The stored secrets that are the platform's own, which no pipeline sends upstream:
    those stored under a key or secret variable's name (`make -s secret-put
    NAME=WECHATPAY_PRIVATE_KEY`), and those such a variable in `environ` names
    (`JWT_SECRET=secret:JWT_SECRET_2027`, as signing keys rotate)."""
    named = {
        environ[variable][len(REFERENCE_MARK) :]
        for variable in SEALABLE_VARIABLES
        if environ.get(variable, "").startswith(REFERENCE_MARK)
    }
    return SEALABLE_VARIABLES | named
