"""What the local cloud serves, read from the deploy files: the `multi-scf` serverless.yml
(functions and their apigw / timer / cmq triggers) and the `apigateway` component file of
the WebSocket API. Later files add to earlier ones; a WebSocket path declared again is
replaced, so a test file can put its own functions behind `/ws`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = (ROOT / "serverless.yml", ROOT / "infra" / "websocket" / "serverless.yml")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    directory: Path
    handler: str = "index.main_handler"


@dataclass(frozen=True)
class ApiRoute:
    path: str
    method: str  # upper case; ANY matches every method
    function: str


@dataclass(frozen=True)
class TimerSpec:
    name: str
    function: str
    cron: str  # 7 fields: second minute hour day-of-month month day-of-week year
    argument: str = ""
    enabled: bool = True  # a disabled timer still fires on demand


@dataclass(frozen=True)
class QueueSpec:
    queue: str
    function: str


@dataclass(frozen=True)
class WebSocketApi:
    path: str
    transport: str
    register: str | None = None
    cleanup: str | None = None


@dataclass
class Manifest:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    routes: list[ApiRoute] = field(default_factory=list)
    timers: list[TimerSpec] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=list)
    websockets: dict[str, WebSocketApi] = field(default_factory=dict)

    def check(self) -> list[str]:
        """Names used by a trigger but declared by no file."""
        missing = []
        used = [(f"apigw {r.method} {r.path}", r.function) for r in self.routes]
        used += [(f"timer {t.name}", t.function) for t in self.timers]
        used += [(f"cmq {q.queue}", q.function) for q in self.queues]
        for where, name in used:
            if name not in self.functions:
                missing.append(f"{where}: function {name!r} is not declared")
        return missing


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a mapping")
    return data


def _multi_scf(path: Path, inputs: dict[str, Any], manifest: Manifest) -> None:
    src = inputs.get("src") or "."
    base = src.get("src", ".") if isinstance(src, dict) else str(src)
    base_dir = (path.parent / base).resolve()
    for name, spec in (inputs.get("functions") or {}).items():
        spec = spec or {}
        directory = (base_dir / str(spec.get("src") or f"./{name}")).resolve()
        handler = str(spec.get("handler") or "index.main_handler")
        manifest.functions[str(name)] = FunctionSpec(str(name), directory, handler)
    for trigger in inputs.get("triggers") or []:
        kind = trigger.get("type")
        params = trigger.get("parameters") or {}
        function = trigger.get("function") or params.get("function")
        if kind == "apigw":
            for api in params.get("apis") or []:
                target = api.get("function") or function
                if not target:
                    raise ManifestError(f"{path}: apigw {api.get('path')} names no function")
                method = str(api.get("method") or "ANY").upper()
                manifest.routes.append(ApiRoute(str(api["path"]), method, str(target)))
        elif kind == "timer":
            if not function or not params.get("cronExpression"):
                raise ManifestError(f"{path}: a timer trigger needs function and cronExpression")
            name = str(params.get("name") or f"{function}-timer")
            argument = params.get("argument")
            manifest.timers.append(
                TimerSpec(
                    name,
                    str(function),
                    str(params["cronExpression"]),
                    "" if argument is None else str(argument),
                    str(params.get("enable", True)).lower() not in ("false", "0", "close"),
                )
            )
        elif kind == "cmq":
            if not function or not params.get("name"):
                raise ManifestError(f"{path}: a cmq trigger needs function and parameters.name")
            manifest.queues.append(QueueSpec(str(params["name"]), str(function)))


def _apigateway(path: Path, inputs: dict[str, Any], manifest: Manifest) -> None:
    for endpoint in inputs.get("endpoints") or []:
        if str(endpoint.get("protocol") or "HTTP").upper() != "WEBSOCKET":
            continue
        function = endpoint.get("function") or {}
        transport = function.get("transportFunctionName")
        if not transport:
            raise ManifestError(
                f"{path}: websocket {endpoint.get('path')} needs a transport function"
            )
        ws_path = str(endpoint.get("path") or "/")
        manifest.websockets[ws_path] = WebSocketApi(
            ws_path,
            str(transport),
            function.get("registerFunctionName"),
            function.get("cleanupFunctionName"),
        )


def load(paths: list[Path] | tuple[Path, ...] = DEFAULT_CONFIGS) -> Manifest:
    manifest = Manifest()
    for path in paths:
        data = _read(Path(path))
        component = str(data.get("component") or "")
        inputs = data.get("inputs") or {}
        if component == "multi-scf":
            _multi_scf(Path(path), inputs, manifest)
        elif component == "apigateway":
            _apigateway(Path(path), inputs, manifest)
        else:
            raise ManifestError(
                f"{path}: component {component!r} is not one the local cloud serves"
            )
    return manifest
