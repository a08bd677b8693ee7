"""The configured provider of each channel, built once per instance from the settings.

A channel is configured when its API base (WeChat Pay) or gateway (Alipay) is set; the
adapter module, and with it the provider's SDK, is imported only when a channel is first
used, so a function that never pays never loads either.
"""

from __future__ import annotations

import threading

from app.config import Settings, get_settings
from app.payments.gateway import Channel, Gateway, ProviderError

# Per channel, the settings an adapter was built from and the adapter.
_built: dict[Channel, tuple[Settings, Gateway]] = {}
_lock = threading.Lock()


def configured(settings: Settings, channel: Channel) -> bool:
    if channel == "wechat":
        return bool(settings.wechatpay_api_base)
    return bool(settings.alipay_gateway)


def gateway(channel: Channel) -> Gateway:
    """The channel's adapter; `ProviderError` when the channel is not configured."""
    settings = get_settings()
    if not configured(settings, channel):
        raise ProviderError(f"the {channel} channel is not configured")
    # Tests and the local cloud replace the settings, and an adapter holds keys parsed
    # from the ones it was built with: built again when they are not the same object.
    with _lock:
        found = _built.get(channel)
        if found is None or found[0] is not settings:
            found = _built[channel] = (settings, _build(settings, channel))
        return found[1]


def _build(settings: Settings, channel: Channel) -> Gateway:
    if channel == "wechat":
        from app.payments import wechatpay  # cold start: wechatpayv3, only where it pays

        return wechatpay.from_settings(settings)
    from app.payments import alipay  # cold start: python-alipay-sdk, only where it pays

    return alipay.from_settings(settings)
