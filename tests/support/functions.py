"""Load a function's index.py the way SCF does, each under its own module name (the local
cloud's loader, so tests and the local cloud import functions the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.functions import load_handler

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def handler(name: str) -> Any:
    """functions/<name>/index.py's main_handler (an http_handler also carries `.routes`)."""
    return load_handler(name, FUNCTIONS / name)
