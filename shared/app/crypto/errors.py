"""The one error envelopes and their providers raise."""

from __future__ import annotations


class EnvelopeError(ValueError):
    """An envelope that cannot be made or opened. The message names the reason (not an
    envelope, malformed, sealed for another name, unknown key, tampered, the provider
    refused ...), never the value, the data key or the master key."""
