"""Clients of Tencent Cloud APIs (SMS, TDMQ, KMS ...): the one place that builds them.

Credentials are the explicit keys or the run role's temporary ones (with a session token);
TENCENTCLOUD_API_ENDPOINT (host:port, over http) points every client at a test endpoint.
The SDK is imported here, when a client is first built, never at cold start.
"""

from __future__ import annotations

from typing import Any

from app.config import get_settings

REQUEST_TIMEOUT_S = 5


def client(client_class: Any) -> Any:
    """An instance of a product's client class (e.g. `sms_client.SmsClient`)."""
    from tencentcloud.common import credential  # cold start: the SDK, when a client is built
    from tencentcloud.common.profile.client_profile import ClientProfile  # cold start: same
    from tencentcloud.common.profile.http_profile import HttpProfile  # cold start: same

    settings = get_settings()
    endpoint = settings.tencentcloud_api_endpoint
    # The scheme is fixed when the profile is built: pass it there, not afterwards.
    http = HttpProfile(
        protocol="http" if endpoint else "https",
        endpoint=endpoint or None,
        reqTimeout=REQUEST_TIMEOUT_S,
    )
    token = settings.tencentcloud_session_token.get_secret_value() or None
    cred = credential.Credential(
        settings.tencentcloud_secret_id,
        settings.tencentcloud_secret_key.get_secret_value(),
        token,
    )
    return client_class(cred, settings.tencentcloud_region, ClientProfile(httpProfile=http))
