"""The embedded default's values that are known and public: what `make run` starts on with
nothing configured, and what the production guard (app.config.production) refuses."""

from __future__ import annotations

from pathlib import Path

# Known and public: tokens signed with it are worthless outside a laptop.
DEV_JWT_SECRET = "dev-only-jwt-secret-" + "x" * 44
# Known and public too: what is sealed under it on a laptop is sealed for the laptop only.
DEV_LOCAL_MASTER_KEY = "ZGV2LW9ubHktbG9jYWwtbWFzdGVyLWtleS0zMmJ5dGU="
LOCAL_DIR = Path(".local")
# The embedded store's bucket on a laptop; in production it would name a bucket of another
# account (1250000000 is no APPID of ours).
LOCAL_COS_BUCKET = "ai-platform-local-1250000000"
