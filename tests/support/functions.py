"""Load a function's index.py the way SCF does, each under its own module name (the local
cloud's loader, so tests and the local cloud import functions the same way)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from infra.local.functions import load_module

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
TEST_FUNCTIONS = ROOT / "tests" / "functions"


def load(name: str, folder: Path = FUNCTIONS) -> ModuleType:
    return load_module(name, folder / name)


def handler(name: str, folder: Path = FUNCTIONS) -> Any:
    return load(name, folder).main_handler
