"""Load a function the way SCF does: its `index.py` under a module name of its own (two
functions' `index` modules never collide), its handler looked up by `index.main_handler`."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

MainHandler = Callable[[Any, Any], Any]

_loaded: dict[Path, ModuleType] = {}
_lock = threading.Lock()


def module_name(name: str) -> str:
    return "scf_fn_" + name.replace("-", "_")


def load_module(name: str, directory: Path, file: str = "index.py") -> ModuleType:
    """Import `directory/file` once per process (thread-safe), as module `scf_fn_<name>`."""
    path = (Path(directory) / file).resolve()
    with _lock:
        module = _loaded.get(path)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name(name), path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[path] = module
        return module


def load_handler(name: str, directory: Path, handler: str = "index.main_handler") -> MainHandler:
    file, _, attribute = handler.rpartition(".")
    module = load_module(name, directory, f"{file or 'index'}.py")
    entry = getattr(module, attribute, None)
    if not callable(entry):
        raise ImportError(f"{directory}: {handler} is not a callable")
    return entry  # type: ignore[no-any-return]
