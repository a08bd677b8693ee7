"""Clients of Tencent Cloud APIs (SMS, SCF) for the app, with the credentials,
region and endpoint of the settings.

Credentials are the explicit keys or the run role's temporary ones (with a session token);
TENCENTCLOUD_API_ENDPOINT (host:port, over http) points every client at a test endpoint.
`app.cloud_clients` builds them; the SDK is imported there, when a client is first built,
never at cold start.
"""

from __future__ import annotations

from typing import Any

from app import cloud_clients
from app.config import get_settings


def client(client_class: Any) -> Any:
    """An instance of a product's client class (e.g. `sms_client.SmsClient`)."""
    return cloud_clients.build(client_class, cloud_clients.CloudAccess.of(get_settings()))
