"""The configured bucket, built once per instance from the settings."""

from __future__ import annotations

import threading

from app.config import Settings, get_settings
from app.storage.objects import ObjectStore

_built: tuple[Settings, ObjectStore] | None = None
_lock = threading.Lock()


def store() -> ObjectStore:
    """The bucket of COS_BUCKET in COS_REGION (COS_ENDPOINT: a plain-http stand-in)."""
    global _built
    settings = get_settings()
    with _lock:
        # Tests and the local cloud replace the settings: built again for new ones.
        if _built is None or _built[0] is not settings:
            from app.storage import cos  # cold start: the COS SDK, only where the bucket is used

            _built = (settings, cos.from_settings(settings))
        return _built[1]
