"""Tencent Cloud API clients (SMS, SCF, KMS ...) built from explicit values: the one way a
client is built, for the app (`app.tencentcloud`, from the settings), for envelope
encryption (`app.crypto.kms`, which may not read the settings) and for the deployer.

The credentials are the explicit keys or the run role's temporary ones with their session
token (the SDK's own environment provider does not read SCF's token, so the credential is
built here); `endpoint` (host:port, over http) points the client at a test endpoint. The SDK
is imported when a client is built, never at cold start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

REQUEST_TIMEOUT_S = 5


class SecretValue(Protocol):
    """A pydantic SecretStr, as far as reading it goes."""

    def get_secret_value(self) -> str: ...


def reveal(value: str | SecretValue) -> str:
    """A setting's text, whether it is held as a plain string or as a pydantic SecretStr."""
    return value if isinstance(value, str) else value.get_secret_value()


class CloudSettings(Protocol):
    """What a client needs from the settings (app.config.Settings has it)."""

    @property
    def tencentcloud_secret_id(self) -> str: ...
    @property
    def tencentcloud_secret_key(self) -> str | SecretValue: ...
    @property
    def tencentcloud_session_token(self) -> str | SecretValue: ...
    @property
    def tencentcloud_region(self) -> str: ...
    @property
    def tencentcloud_api_endpoint(self) -> str: ...


@dataclass(frozen=True)
class CloudAccess:
    secret_id: str
    secret_key: str = field(repr=False)  # never in a log line or a traceback's locals repr
    session_token: str = field(repr=False)  # empty with permanent keys
    region: str
    endpoint: str = ""  # host:port over http, tests only; empty: the product's own host

    @classmethod
    def of(cls, settings: CloudSettings) -> CloudAccess:
        return cls(
            secret_id=settings.tencentcloud_secret_id,
            secret_key=reveal(settings.tencentcloud_secret_key),
            session_token=reveal(settings.tencentcloud_session_token),
            region=settings.tencentcloud_region,
            endpoint=settings.tencentcloud_api_endpoint,
        )


def build(client_class: Any, access: CloudAccess, timeout_s: int = REQUEST_TIMEOUT_S) -> Any:
    """An instance of a product's client class (e.g. `sms_client.SmsClient`). Raises the
    SDK's TencentCloudSDKException (code `InvalidCredential`) without keys."""
    from tencentcloud.common import credential  # cold start: the SDK, when a client is built
    from tencentcloud.common.profile.client_profile import ClientProfile  # cold start: same
    from tencentcloud.common.profile.http_profile import HttpProfile  # cold start: same

    # The SDK logs whole request and answer bodies at DEBUG: SMS codes, KMS data keys.
    logging.getLogger("tencentcloud_sdk_common").setLevel(logging.INFO)
    # The scheme is fixed when the profile is built: pass it there, not afterwards.
    http = HttpProfile(
        protocol="http" if access.endpoint else "https",
        endpoint=access.endpoint or None,
        reqTimeout=timeout_s,
    )
    cred = credential.Credential(access.secret_id, access.secret_key, access.session_token or None)
    return client_class(cred, access.region, ClientProfile(httpProfile=http))
