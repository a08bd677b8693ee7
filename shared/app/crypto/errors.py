"""The one error envelopes and their providers raise."""

from __future__ import annotations


class EnvelopeError(ValueError):
    """An envelope that cannot be made or opened. The message names the reason (not an
    envelope, malformed, sealed for another name, unknown key, tampered, the provider
    refused ...), never the value, the data key or the master key."""


class ProviderUnavailable(EnvelopeError):
    """The provider could not be asked at all (KMS unreachable, throttling or failing, or
    refusing the credentials): every envelope fails alike, whatever its key, where an
    EnvelopeError of its own says something of that envelope or its key."""
