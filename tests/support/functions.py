"""Load a function's index.py the way SCF does, each under its own module name."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
_loaded: dict[str, ModuleType] = {}


def load(name: str, folder: Path = FUNCTIONS) -> ModuleType:
    key = str(folder / name)
    if key not in _loaded:
        spec = importlib.util.spec_from_file_location(f"scf_fn_{name.replace('-', '_')}", folder / name / "index.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[key] = module
    return _loaded[key]


def handler(name: str) -> Any:
    return load(name).main_handler
