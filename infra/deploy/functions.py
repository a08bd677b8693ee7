"""Each function: created, or its code and configuration updated where they differ from
`GetFunction`'s.

What is compared: the code (the sha256 of its zip, kept in the function's Description as
`code sha256 <hex>`, since SCF reports no hash of the code it holds), the handler, memory,
timeout, run role, VPC and subnet, the layer version, every environment variable (the
plan masks their values), and a WebSocket web function's idle timeout
(`ProtocolParams.WSParams.IdleTimeOut`). A different runtime or kind is a blocker: SCF
cannot change a function's runtime (`UpdateFunctionConfiguration` documents it as set at
creation), nor its type (Event or HTTP, a web function) or protocol (WebSocket, once on,
stays on), which only `CreateFunction` takes.

A web function (serverless.yml `web:`) is created with `Type: HTTP` and no handler (SCF
runs its `scf_bootstrap`), with WebSocket `ProtocolType: WS` and its idle timeout.

How: `CreateFunction`; `UpdateFunctionCode` (with the handler) when the code or handler
differ; `UpdateFunctionConfiguration` with the whole managed configuration when anything
else differs, and with the new Description after new code. Each of these leaves the function
Creating or Updating for a while, refusing the next change: every write waits for Active.
Code travels inline (`ZipFile`, base64): a function zip holds one small index.py; one too
large for the API's 10 MB request limit goes through COS instead.

A function a write of which failed (infra.deploy.status, with the sources): one SCF failed
to create, which never ran, is deleted (`DeleteFunction`, then waited out) and created
anew, a replacement in the plan; one whose update or publish failed, which still runs what
it ran before, gets its code and its whole configuration again, with a `status` line in the
plan; one being deleted, or whose deletion failed, is a blocker, as is a status SCF does not
document. An apply first waits out a write under way (Creating, Updating, Publishing).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from infra.deploy import status
from infra.deploy.context import Context
from infra.deploy.layer import LayerRef
from infra.deploy.plan import Diff, diffs
from infra.deploy.target import RESERVED_PREFIXES, FunctionTarget, hash_note, noted_hash

# What `UpdateFunctionCode` changes; every other field is `UpdateFunctionConfiguration`'s.
_CODE_FIELDS = frozenset({"code", "handler"})
# base64 grows a zip by 4/3: 6 MB of zip and the rest of the request stay under 10 MB.
INLINE_LIMIT_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """What the deployer manages of a function, in comparable form."""

    runtime: str
    kind: str  # `Event`, `HTTP` (a web function) or `HTTP WS` (with WebSocket on)
    handler: str  # empty for a web function: SCF runs its scf_bootstrap
    memory: int
    timeout: int
    role: str
    vpc: str  # `<vpc>/<subnet>`, or empty
    layers: tuple[str, ...]  # `<name>:<version>`
    environment: dict[str, str]
    code: str | None  # sha256 of the zip
    idle_timeout: int | None = None  # a WebSocket web function's, in seconds

    def compare(self, new: Config) -> list[Diff]:
        short = (self.code or "")[:12] or None, (new.code or "")[:12] or None
        changed = diffs(
            [
                ("code", *short),
                ("handler", self.handler, new.handler),
                ("memory", self.memory, new.memory),
                ("timeout", self.timeout, new.timeout),
                ("role", self.role or None, new.role or None),
                ("vpc", self.vpc or None, new.vpc or None),
                ("layers", ", ".join(self.layers) or None, ", ".join(new.layers) or None),
                ("idle timeout", self.idle_timeout, new.idle_timeout),
            ]
        )
        for key in sorted(set(self.environment) | set(new.environment)):
            old, value = self.environment.get(key), new.environment.get(key)
            if old != value:
                changed.append(Diff(f"environment.{key}", old, value, secret=True))
        return changed


def _kind(function_type: str, protocol: str | None) -> str:
    return f"{function_type} {protocol}" if protocol else function_type


def desired(fn: FunctionTarget, layer: LayerRef) -> Config:
    spec = fn.spec
    idle = spec.web.websocket_idle_timeout_s if spec.web else None
    return Config(
        runtime=spec.runtime,
        kind=_kind("HTTP", "WS" if idle else None) if spec.web else "Event",
        handler="" if spec.web else spec.handler,
        memory=spec.memory_mb,
        timeout=spec.timeout_s,
        role=spec.role,
        vpc=f"{spec.vpc_id}/{spec.subnet_id}" if spec.vpc_id else "",
        layers=(layer.render(),),
        environment=dict(spec.environment),
        code=fn.package.sha256,
        idle_timeout=idle,
    )


def current(answer: dict[str, Any]) -> Config:
    vpc = answer.get("VpcConfig") or {}
    variables = (answer.get("Environment") or {}).get("Variables") or []
    web = answer.get("Type") == "HTTP"
    idle = ((answer.get("ProtocolParams") or {}).get("WSParams") or {}).get("IdleTimeOut")
    return Config(
        runtime=str(answer.get("Runtime") or ""),
        kind=_kind(str(answer.get("Type") or "Event"), answer.get("ProtocolType") or None),
        handler="" if web else str(answer.get("Handler") or ""),
        memory=int(answer.get("MemorySize") or 0),
        timeout=int(answer.get("Timeout") or 0),
        role=str(answer.get("Role") or ""),
        vpc=f"{vpc['VpcId']}/{vpc.get('SubnetId') or ''}" if vpc.get("VpcId") else "",
        layers=tuple(
            f"{layer['LayerName']}:{layer['LayerVersion']}" for layer in answer.get("Layers") or []
        ),
        # SCF may list its own variables (the region, the role's keys): not ours to compare.
        environment={
            v["Key"]: v.get("Value") or ""
            for v in variables
            if not str(v["Key"]).startswith(RESERVED_PREFIXES)
        },
        code=noted_hash("code", answer.get("Description")),
        idle_timeout=int(idle) if idle is not None else None,
    )


def _configuration(fn: FunctionTarget, layer: LayerRef) -> dict[str, Any]:
    """The managed configuration as `CreateFunction` and `UpdateFunctionConfiguration` take it."""
    spec = fn.spec
    return {
        "Description": hash_note("code", fn.package.sha256),
        "MemorySize": spec.memory_mb,
        "Timeout": spec.timeout_s,
        "Environment": {
            "Variables": [{"Key": k, "Value": v} for k, v in sorted(spec.environment.items())]
        },
        "Layers": [{"LayerName": layer.name, "LayerVersion": layer.version}],
        # Sent even when empty: that is how a role or VPC taken out of the file is removed.
        "Role": spec.role,
        "VpcConfig": {"VpcId": spec.vpc_id, "SubnetId": spec.subnet_id},
        **_protocol_params(fn),
    }


def _protocol_params(fn: FunctionTarget) -> dict[str, Any]:
    idle = fn.spec.web.websocket_idle_timeout_s if fn.spec.web else None
    return {} if idle is None else {"ProtocolParams": {"WSParams": {"IdleTimeOut": idle}}}


def _kind_parameters(fn: FunctionTarget) -> dict[str, Any]:
    """What `CreateFunction` alone takes: the type, the handler of an event function, the
    protocol of a WebSocket web function."""
    if fn.spec.web is None:
        return {"Type": "Event", "Handler": fn.spec.handler}
    if fn.spec.web.websocket_idle_timeout_s is None:
        return {"Type": "HTTP"}
    return {"Type": "HTTP", "ProtocolType": "WS"}


def _code(ctx: Context, fn: FunctionTarget) -> tuple[str, dict[str, Any]]:
    """The code source and where the code is: inline, or in COS when too large for that."""
    if fn.package.size <= INLINE_LIMIT_BYTES:
        return "ZipFile", {"ZipFile": base64.b64encode(fn.package.path.read_bytes()).decode()}
    key = ctx.store.key(f"functions/{fn.name}", fn.package.sha256)
    ctx.store.upload(key, fn.package.path)
    return "Cos", ctx.store.location(key)


def reconcile(ctx: Context, fn: FunctionTarget, layer: LayerRef) -> bool:
    """Create or update the function; True when it existed before (and still does)."""
    answer = ctx.api.function(fn.name)
    if answer is not None and not ctx.plan.dry_run:
        # An interrupted deploy may have left it Creating or Updating: see how that ends.
        answer = ctx.api.settle_function(fn.name)
    if answer is None:
        _create(ctx, fn, layer, failed=None)
        return False
    state = status.Status.of(answer)
    if state.value == status.CREATE_FAILED:
        _create(ctx, fn, layer, failed=state)
        return False
    # A write under way is seen so only by a plan, which does not wait: it plans from what
    # GetFunction shows.
    if state.value in (status.ACTIVE, *status.TRANSITIONS, *status.UPDATE_AGAIN):
        _update(ctx, fn, layer, answer, again=state.value in status.UPDATE_AGAIN)
        return True
    advice = status.function_advice(ctx.namespace, fn.name, state.value)
    ctx.plan.block(f"function {fn.name} is {state.render()}: {advice}")
    return True


def _create(
    ctx: Context, fn: FunctionTarget, layer: LayerRef, failed: status.Status | None
) -> None:
    """Create the function; first delete the one SCF failed to create, if `failed`."""
    want = desired(fn, layer)
    detail = f"{want.runtime}, {want.memory} MB, {want.timeout} s, layer {layer.render()}"
    what = f"function {fn.name}"
    if failed is None:
        if not ctx.plan.create(what, detail):
            return
    else:
        if not ctx.plan.replace(what, f"{failed.render()}: it never ran", detail):
            return
        ctx.write("DeleteFunction", FunctionName=fn.name, Namespace=ctx.namespace)
        ctx.api.wait_deleted(fn.name)
        ctx.plan.made_in_part(1)
    source, code = _code(ctx, fn)
    ctx.write(
        "CreateFunction",
        FunctionName=fn.name,
        Namespace=ctx.namespace,
        Runtime=want.runtime,
        **_kind_parameters(fn),
        CodeSource=source,
        Code=code,
        **_configuration(fn, layer),
    )
    ctx.api.wait_function(fn.name)


def _update(
    ctx: Context, fn: FunctionTarget, layer: LayerRef, answer: dict[str, Any], again: bool
) -> None:
    """Update what differs; everything, code and configuration, when `again` (SCF failed the
    last update, and what GetFunction shows may be that update rather than what runs)."""
    want = desired(fn, layer)
    have = current(answer)
    for what, old, new in (("runtime", have.runtime, want.runtime), ("kind", have.kind, want.kind)):
        if old != new:
            ctx.plan.block(
                f"function {fn.name} {what}: {old} -> {new}: SCF cannot change a function's "
                f"{what}; delete the function, then deploy again"
            )
            return
    # The code's lines first: SCF takes the code in a call of its own, made first, so a
    # failure of the configuration's call leaves them made and the rest not.
    changed = sorted(have.compare(want), key=lambda diff: diff.field not in _CODE_FIELDS)
    if again:
        changed.append(Diff("status", status.Status.of(answer).render(), status.ACTIVE))
    if not ctx.plan.update(f"function {fn.name}", changed):
        return
    fields = {diff.field for diff in changed}
    code_lines = len(fields & _CODE_FIELDS)
    if code_lines or again:
        source, code = _code(ctx, fn)
        handler = {"Handler": want.handler} if want.handler else {}
        ctx.write(
            "UpdateFunctionCode",
            FunctionName=fn.name,
            Namespace=ctx.namespace,
            **handler,
            CodeSource=source,
            **code,
        )
        ctx.api.wait_function(fn.name)
        if code_lines and fields - _CODE_FIELDS:
            ctx.plan.made_in_part(code_lines)
    if fields - {"handler"}:
        ctx.write(
            "UpdateFunctionConfiguration",
            FunctionName=fn.name,
            Namespace=ctx.namespace,
            **_configuration(fn, layer),
        )
        ctx.api.wait_function(fn.name)
