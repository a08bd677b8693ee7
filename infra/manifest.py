"""serverless.yml, read: the layer, the functions with their configuration and triggers, and
the custom domain. The one reader of the file, for the deployer (`infra.deploy`) and the
local cloud (`infra.local`) alike.

`${env:NAME}` and `${function:NAME}` in values are resolved by the `Variables` given to
`load` (a value that is only `${env:NAME?}` is optional: its key is left out while NAME is
unset): the deployer's are strict (a missing variable stops the deploy, naming every one
missing) and name functions as deployed (`<app>-<stage>-<name>`); the local cloud's leave
what it does not know empty and name functions as they are locally.

Each stage has an SCF namespace of its own (a namespace holds 50 functions, a region 5
namespaces: one shared namespace fits one stage): `namespace:` when it resolves to a name
(serverless.yml: `${env:SCF_NAMESPACE?}`, for an operator to name one), else
`<app>-<stage>`. A function learns its namespace from SCF itself, which sets
`SCF_NAMESPACE` in every function's environment (the queue's `Invoke` names it:
app.queue.scf), so it is always the one the deployer deployed into; SCF reserves the `SCF_`
prefix, and the deployer refuses a file that sets such a variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "serverless.yml"
FUNCTIONS_DIR = ROOT / "functions"
_VARIABLE = re.compile(r"\$\{(env|function):([A-Za-z0-9_\-]+)(\??)\}")
# A whole value `${env:NAME?}`: the key is left out where NAME is unset or empty (SCF
# refuses an empty environment value).
_OPTIONAL = re.compile(r"^\$\{env:([A-Za-z0-9_\-]+)\?\}$")
_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9\-]{0,40}[a-z0-9]$")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class TimerSpec:
    name: str
    function: str
    cron: str  # 7 fields: second minute hour day-of-month month day-of-week year
    argument: str = ""
    enabled: bool = True  # a disabled timer still fires on demand


@dataclass(frozen=True)
class AsyncSpec:
    """How the platform retries a failed asynchronous invocation, and how long it keeps one."""

    retries: int
    ttl_s: int


@dataclass(frozen=True)
class WebSpec:
    """A web function: SCF runs its `scf_bootstrap`, which serves HTTP on port 9000, instead
    of calling a handler with events. The custom domain sends `path` to it (its one path: a
    web function has no route table). With `websocket_idle_timeout_s` it is a WebSocket
    server (ProtocolType WS), one instance per connection, closed by the platform after that
    many idle seconds; SCF cannot turn WebSocket off again."""

    path: str
    websocket_idle_timeout_s: int | None = None


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    directory: Path
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    handler: str = "index.main_handler"
    http: bool = False  # an event function with a Function URL, and its routes' paths
    web: WebSpec | None = None  # a web function (a Function URL, and its path)
    timers: tuple[TimerSpec, ...] = ()
    asynchronous: AsyncSpec | None = None  # invoked asynchronously: the runner's queue
    invoke_after_deploy: bool = False
    role: str = ""
    vpc_id: str = ""
    subnet_id: str = ""
    # The most instances SCF may run at once (its reserved concurrency, infra.deploy.
    # concurrency); None: the deployer leaves the function's reservation as it finds it.
    max_instances: int | None = None


@dataclass(frozen=True)
class LayerSpec:
    name: str
    description: str = ""


@dataclass(frozen=True)
class DomainSpec:
    name: str
    protocol: str  # HTTP, HTTPS or HTTP&HTTPS
    certificate_id: str = ""


@dataclass
class Manifest:
    app: str
    stage: str
    namespace: str
    layer: LayerSpec
    domain: DomainSpec | None
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    @property
    def timers(self) -> list[TimerSpec]:
        return [timer for spec in self.functions.values() for timer in spec.timers]

    @property
    def http_functions(self) -> list[FunctionSpec]:
        return [spec for spec in self.functions.values() if spec.http]

    @property
    def web_paths(self) -> dict[str, str]:
        """Each web function's path on the custom domain: path -> function."""
        return {spec.web.path: spec.name for spec in self.functions.values() if spec.web}


class Variables:
    """How `${env:NAME}` and `${function:NAME}` resolve."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        strict: bool = False,
        deployed_names: bool = False,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.strict = strict
        self.deployed_names = deployed_names
        self.missing: set[str] = set()
        self.app = ""
        self.stage = ""

    def function_name(self, name: str) -> str:
        return f"{self.app}-{self.stage}-{name}" if self.deployed_names else name

    def _left_out(self, value: Any) -> bool:
        optional = _OPTIONAL.match(value) if isinstance(value, str) else None
        return optional is not None and not self.environ.get(optional.group(1))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: self.resolve(item) for key, item in value.items() if not self._left_out(item)
            }
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str):
            return value

        def one(found: re.Match[str]) -> str:
            kind, name = found.group(1), found.group(2)
            if kind == "function":
                return self.function_name(name)
            if name not in self.environ or (self.strict and not self.environ[name]):
                if not found.group(3):  # optional: nothing is missing
                    self.missing.add(name)
                return ""
            return self.environ[name]

        return _VARIABLE.sub(one, value)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a mapping")
    return data


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _function(
    name: str, raw: dict[str, Any], defaults: dict[str, Any], functions_dir: Path
) -> FunctionSpec:
    if not _FUNCTION_NAME.match(name):
        raise ManifestError(f"function {name!r}: lower-case letters, digits and '-' only")
    merged = {**defaults, **raw}
    environment = {
        str(key): _text(value)
        for key, value in {**defaults.get("environment", {}), **raw.get("environment", {})}.items()
    }
    timers = tuple(
        TimerSpec(
            name=str(timer.get("name") or f"{name}-timer"),
            function=name,
            cron=str(timer["cron"]),
            argument=_text(timer.get("argument")),
            enabled=bool(timer.get("enabled", True)),
        )
        for timer in raw.get("timers") or []
    )
    asynchronous = None
    if raw.get("async"):
        asynchronous = AsyncSpec(int(raw["async"]["retries"]), int(raw["async"]["ttl_s"]))
    vpc = merged.get("vpc") or {}
    web = _web(name, raw.get("web"), int(merged.get("timeout") or 3))
    if web is not None and raw.get("http"):
        raise ManifestError(f"function {name!r}: `http` (an event function) or `web`, not both")
    return FunctionSpec(
        name=name,
        directory=functions_dir / name,
        runtime=str(merged.get("runtime") or "Python3.10"),
        memory_mb=int(merged.get("memory") or 128),
        timeout_s=int(merged.get("timeout") or 3),
        environment=environment,
        handler=str(raw.get("handler") or ("index.app" if web else "index.main_handler")),
        http=bool(raw.get("http")),
        web=web,
        timers=timers,
        asynchronous=asynchronous,
        invoke_after_deploy=bool(raw.get("invoke_after_deploy")),
        role=_text(merged.get("role")),
        vpc_id=_text(vpc.get("vpc_id")),
        subnet_id=_text(vpc.get("subnet_id")),
        max_instances=_max_instances(name, merged.get("max_instances")),
    )


def _max_instances(name: str, value: Any) -> int | None:
    """`max_instances`, from the function or `defaults` (a function's `null` undoes a
    default): a whole number of instances, at least one."""
    if value is None:
        return None
    # YAML reads `yes` as True, and bool is an int to Python.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(
            f"function {name!r}: max_instances {value!r} is not a positive whole number"
        )
    return value


# What SCF's WSParams.IdleTimeOut accepts (tccli's schema, 1-1800 s).
IDLE_TIMEOUT_RANGE_S = (1, 1800)


def _web(name: str, raw: Any, timeout_s: int) -> WebSpec | None:
    if not raw:
        return None
    path = str(raw.get("path") or "")
    if not re.fullmatch(r"(/[A-Za-z0-9_\-]+)+", path):
        raise ManifestError(f"function {name!r}: web.path {path!r} is not a static path")
    websocket = raw.get("websocket")
    idle = None
    if websocket:
        idle = int(websocket.get("idle_timeout_s") or 15)
        low, high = IDLE_TIMEOUT_RANGE_S
        if not low <= idle <= min(high, timeout_s):
            raise ManifestError(
                f"function {name!r}: websocket.idle_timeout_s {idle} must be {low}-{high} s "
                f"and at most the function's timeout ({timeout_s} s)"
            )
    return WebSpec(path, idle)


def _stage_namespace(variables: Variables) -> str:
    """`<app>-<stage>`; the app's name alone where no stage is set (the local cloud's)."""
    return f"{variables.app}-{variables.stage}" if variables.stage else variables.app


def load(
    path: Path = DEFAULT_CONFIG,
    variables: Variables | None = None,
    *,
    functions_dir: Path | None = None,
) -> Manifest:
    """The manifest of `path`, its variables resolved by `variables` (the local cloud's
    lenient ones by default). Function folders are `functions_dir/<name>`: the file's
    `functions_dir` key (relative to the file) or its sibling `functions/`."""
    variables = variables or Variables()
    data = _read(Path(path))
    variables.app = str(data.get("app") or "")
    variables.stage = _text(variables.resolve(data.get("stage")))
    data = variables.resolve(data)
    if variables.strict and variables.missing:
        raise ManifestError("not set: " + ", ".join(sorted(variables.missing)))
    folder = functions_dir or Path(path).resolve().parent / str(
        data.get("functions_dir") or "functions"
    )
    layer = data.get("layer") or {}
    domain = data.get("domain")
    manifest = Manifest(
        app=variables.app,
        stage=variables.stage,
        namespace=_text(data.get("namespace")) or _stage_namespace(variables),
        layer=LayerSpec(str(layer.get("name") or variables.app), _text(layer.get("description"))),
        domain=None
        if not domain
        else DomainSpec(
            str(domain.get("name") or ""),
            str(domain.get("protocol") or "HTTPS"),
            _text(domain.get("certificate_id")),
        ),
    )
    defaults = data.get("defaults") or {}
    for name, raw in (data.get("functions") or {}).items():
        manifest.functions[str(name)] = _function(str(name), raw or {}, defaults, folder)
    return manifest
