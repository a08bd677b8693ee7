"""What the account should hold, from serverless.yml and the packages `make package` built:
the layer's zip, each function with its deployed name and zip, and the custom domain's path
mapping (infra.routes over the routes each HTTP function's handler serves and the web
functions' paths). Checked here,
before any call, for what SCF would refuse halfway through a deploy.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from infra import routes
from infra.deploy.settings import ConfigurationError, Deployment
from infra.functions import load_handler
from infra.manifest import FunctionSpec, Manifest
from infra.package import LAYER_NAME

# SCF sets these itself (the region, the run role's keys), and all of a function's variables
# together must fit in 4 KB (DESIGN.md section 3).
# SCF reserves these prefixes for the variables it sets itself (the run role's keys,
# SCF_NAMESPACE, SCF_FUNCTIONNAME, ...) and refuses a function that sets one.
RESERVED_PREFIXES = ("TENCENTCLOUD_", "QCLOUD_", "SCF_")
ENVIRONMENT_LIMIT_BYTES = 4096
# What SCF serves the paths and runs the code of: no version is ever published.
QUALIFIER = "$LATEST"


def hash_note(label: str, sha256: str) -> str:
    """How a package's hash is kept in a description SCF stores with what it holds (letters,
    digits and spaces: a function's Description allows little more)."""
    return f"{label} sha256 {sha256}"


def noted_hash(label: str, description: str | None) -> str | None:
    found = re.search(hash_note(label, "([0-9a-f]{64})"), description or "")
    return found[1] if found else None


@dataclass(frozen=True)
class Package:
    path: Path
    sha256: str
    size: int

    @classmethod
    def of(cls, path: Path) -> Package:
        if not path.is_file():
            raise ConfigurationError(f"{path}: missing; run `make package` first")
        data = path.read_bytes()
        return cls(path, hashlib.sha256(data).hexdigest(), len(data))


# SCF's Namespace: letters, digits, - and _, at most 30 (the SDK's error code for one it
# refuses, InvalidParameterValue.NamespaceInvalid; tccli's api.json states no rule).
NAMESPACE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
# SCF's FunctionName, as deployed (`<app>-<stage>-<name>`): checked before any call, so a
# long STAGE cannot stop an apply half way, at the first function whose name is too long.
DEPLOYED_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,59}$")


@dataclass(frozen=True)
class FunctionTarget:
    spec: FunctionSpec
    name: str  # as deployed: <app>-<stage>-<name>
    package: Package


@dataclass(frozen=True)
class Target:
    manifest: Manifest
    layer: Package
    runtimes: tuple[str, ...]  # the layer's CompatibleRuntimes: every function's runtime
    functions: tuple[FunctionTarget, ...]
    mappings: tuple[routes.PathMapping, ...]  # the domain's paths, by function as declared

    def deployed(self, name: str) -> str:
        return next(fn.name for fn in self.functions if fn.spec.name == name)


def _check_environment(spec: FunctionSpec) -> None:
    reserved = sorted(k for k in spec.environment if k.startswith(RESERVED_PREFIXES))
    if reserved:
        raise ConfigurationError(f"{spec.name}: SCF reserves {', '.join(reserved)}")
    empty = sorted(k for k, v in spec.environment.items() if not v)
    if empty:
        raise ConfigurationError(f"{spec.name}: SCF refuses empty values: {', '.join(empty)}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in spec.environment.items())
    if size > ENVIRONMENT_LIMIT_BYTES:
        raise ConfigurationError(
            f"{spec.name}: its variables take {size} bytes, over SCF's {ENVIRONMENT_LIMIT_BYTES}"
        )


# What SCF's MemorySize and Timeout take (tccli's api.json, UpdateFunctionConfiguration):
# 64 MB, or 128-3072 MB in steps of 128; 1-900 s.
MEMORY_RANGE_MB = (128, 3072)
MEMORY_STEP_MB = 128
TIMEOUT_RANGE_S = (1, 900)


def _check_size(spec: FunctionSpec) -> None:
    """SCF refuses these at the function's own write: checked before any, so one function
    late in the file cannot stop an apply after the layer and the others have changed."""
    low, high = MEMORY_RANGE_MB
    memory = spec.memory_mb
    if memory != 64 and not (low <= memory <= high and memory % MEMORY_STEP_MB == 0):
        raise ConfigurationError(
            f"{spec.name}: SCF refuses memory {memory} MB (64, or {low}-{high} in steps of"
            f" {MEMORY_STEP_MB})"
        )
    low, high = TIMEOUT_RANGE_S
    if not low <= spec.timeout_s <= high:
        raise ConfigurationError(
            f"{spec.name}: SCF refuses timeout {spec.timeout_s} s ({low}-{high})"
        )


# A timer, as SCF's timer trigger page has it (https://cloud.tencent.com/document/product/583/9708):
# a cron of 7 fields, each of its range (day and weekday also take ? L W #, months and
# weekdays their English names, SUN = 0), and an argument of at most 4 KB; its name as
# CreateTrigger's TriggerName says (tccli's api.json): letters, digits, - and _, at most 100.
# The page also keeps a legacy 5-field form, which is refused here as the local cloud does
# (infra.local.timers): a file's cron means the same on both. Checked before any call, so
# a cron SCF refuses stops the deploy before it changes anything rather than half way.
_CRON_FIELDS = (
    ("second", 0, 59, ""),
    ("minute", 0, 59, ""),
    ("hour", 0, 23, ""),
    ("day", 1, 31, "?LW"),
    ("month", 1, 12, ""),
    ("weekday", 0, 6, "?L#"),
    ("year", 1970, 2099, ""),
)
_CRON_NAMES = {
    "month": ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    "weekday": ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
}
TIMER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
TIMER_ARGUMENT_LIMIT_BYTES = 4096


def _cron_fault(cron: str) -> str | None:
    """What SCF would refuse in `cron`, or None."""
    fields = cron.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"{len(fields)} fields, not 7: second minute hour day month weekday year"
    for text, (what, low, high, symbols) in zip(fields, _CRON_FIELDS, strict=True):
        value = text.upper()
        for number, name in enumerate(_CRON_NAMES.get(what, []), start=low):
            value = value.replace(name, str(number))
        if not re.fullmatch(rf"[0-9*/,\-{symbols}]+", value):
            return f"{what} {text!r}"
        # The values, not the steps after `/` nor the nth weekday after `#`.
        if any(not low <= int(n) <= high for n in re.findall(r"(?<![/#\d])\d+", value)):
            return f"{what} {text}: {low}-{high}"
    return None


def _check_timers(spec: FunctionSpec) -> None:
    for timer in spec.timers:
        if not TIMER_NAME.match(timer.name):
            raise ConfigurationError(
                f"{spec.name}: SCF refuses the timer name {timer.name!r} (letters, digits, - and"
                " _, starting with a letter, at most 100)"
            )
        fault = _cron_fault(timer.cron)
        if fault is not None:
            raise ConfigurationError(
                f"{spec.name}: SCF refuses timer {timer.name}'s cron {timer.cron!r} ({fault})"
            )
        size = len(timer.argument.encode())
        if size > TIMER_ARGUMENT_LIMIT_BYTES:
            raise ConfigurationError(
                f"{spec.name}: timer {timer.name}'s argument takes {size} bytes, over SCF's"
                f" {TIMER_ARGUMENT_LIMIT_BYTES}"
            )


_RUNTIME = re.compile(r"^Python(\d+)\.(\d+)$")
_BYTECODE_TAG = re.compile(r"/__pycache__/[^/]+\.(cpython-\d+)\.pyc$")


def _check_layer_bytecode(layer: Package, runtimes: tuple[str, ...]) -> None:
    """The layer carries bytecode for every function's runtime (`make package` compiles it
    with that CPython): a layer built for another Python would be published as this one's,
    and every cold start would compile its modules from source (infra/package.py)."""
    with zipfile.ZipFile(layer.path) as archive:
        tags = {m.group(1) for m in map(_BYTECODE_TAG.search, archive.namelist()) if m}
    for runtime in runtimes:
        version = _RUNTIME.match(runtime)
        wanted = f"cpython-{version.group(1)}{version.group(2)}" if version else None
        if wanted is not None and wanted not in tags:
            held = ", ".join(sorted(tags)) or "none"
            raise ConfigurationError(
                f"{layer.path}: no bytecode for {runtime} ({wanted}; it holds {held}): run "
                f"`make package`, which compiles it with that Python"
            )


def build(deployment: Deployment, dist: Path) -> Target:
    manifest = deployment.manifest
    if not NAMESPACE_NAME.match(manifest.namespace):
        raise ConfigurationError(
            f"SCF refuses the namespace name {manifest.namespace!r} (letters, digits, - and _,"
            " at most 30): shorten STAGE, or name one with SCF_NAMESPACE"
        )
    domain = manifest.domain
    if domain is not None and "HTTPS" in domain.protocol and not domain.certificate_id:
        raise ConfigurationError(f"domain {domain.name}: {domain.protocol} needs a certificate")
    functions = []
    for spec in manifest.functions.values():
        _check_environment(spec)
        _check_size(spec)
        _check_timers(spec)
        package = Package.of(dist / "functions" / f"{spec.name}.zip")
        name = deployment.variables.function_name(spec.name)
        if not DEPLOYED_NAME.match(name):
            raise ConfigurationError(
                f"{spec.name}: SCF refuses the function name {name!r} (2-60 letters, digits,"
                " - and _, starting with a letter): shorten STAGE or the name"
            )
        functions.append(FunctionTarget(spec, name, package))
    handlers = {
        spec.name: load_handler(spec.name, spec.directory, spec.handler)
        for spec in manifest.http_functions
    }
    layer = Package.of(dist / "layer" / LAYER_NAME)
    runtimes = tuple(sorted({spec.runtime for spec in manifest.functions.values()}))
    _check_layer_bytecode(layer, runtimes)
    return Target(
        manifest=manifest,
        layer=layer,
        runtimes=runtimes,
        functions=tuple(functions),
        mappings=tuple(routes.mapping_of_handlers(handlers, manifest.web_paths)),
    )
