"""Each function: created, or its code and configuration updated where they differ from
`GetFunction`'s.

What is compared: the code (the sha256 of its zip, kept in the function's Description as
`code sha256 <hex>`, since SCF reports no hash of the code it holds), the handler, memory,
timeout, run role, VPC and subnet, the layer version, and every environment variable (the
plan masks their values). A different runtime is a blocker: SCF cannot change a function's
runtime (`UpdateFunctionConfiguration` documents it as set at creation).

How: `CreateFunction`; `UpdateFunctionCode` (with the handler) when the code or handler
differ; `UpdateFunctionConfiguration` with the whole managed configuration when anything
else differs, and with the new Description after new code. Each of these leaves the function
Creating or Updating for a while, refusing the next change: every write waits for Active.
Code travels inline (`ZipFile`, base64): a function zip holds one small index.py; one too
large for the API's 10 MB request limit goes through COS instead.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from infra.deploy.context import Context
from infra.deploy.layer import LayerRef
from infra.deploy.plan import Diff, diffs
from infra.deploy.target import RESERVED_PREFIXES, FunctionTarget, hash_note, noted_hash

# base64 grows a zip by 4/3: 6 MB of zip and the rest of the request stay under 10 MB.
INLINE_LIMIT_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """What the deployer manages of a function, in comparable form."""

    runtime: str
    handler: str
    memory: int
    timeout: int
    role: str
    vpc: str  # `<vpc>/<subnet>`, or empty
    layers: tuple[str, ...]  # `<name>:<version>`
    environment: dict[str, str]
    code: str | None  # sha256 of the zip

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
            ]
        )
        for key in sorted(set(self.environment) | set(new.environment)):
            old, value = self.environment.get(key), new.environment.get(key)
            if old != value:
                changed.append(Diff(f"environment.{key}", old, value, secret=True))
        return changed


def desired(fn: FunctionTarget, layer: LayerRef) -> Config:
    spec = fn.spec
    return Config(
        runtime=spec.runtime,
        handler=spec.handler,
        memory=spec.memory_mb,
        timeout=spec.timeout_s,
        role=spec.role,
        vpc=f"{spec.vpc_id}/{spec.subnet_id}" if spec.vpc_id else "",
        layers=(layer.render(),),
        environment=dict(spec.environment),
        code=fn.package.sha256,
    )


def current(answer: dict[str, Any]) -> Config:
    vpc = answer.get("VpcConfig") or {}
    variables = (answer.get("Environment") or {}).get("Variables") or []
    return Config(
        runtime=str(answer.get("Runtime") or ""),
        handler=str(answer.get("Handler") or ""),
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
    }


def _code(ctx: Context, fn: FunctionTarget) -> tuple[str, dict[str, Any]]:
    """The code source and where the code is: inline, or in COS when too large for that."""
    if fn.package.size <= INLINE_LIMIT_BYTES:
        return "ZipFile", {"ZipFile": base64.b64encode(fn.package.path.read_bytes()).decode()}
    key = ctx.store.key(f"functions/{fn.name}", fn.package.sha256)
    ctx.store.upload(key, fn.package.path)
    return "Cos", ctx.store.location(key)


def reconcile(ctx: Context, fn: FunctionTarget, layer: LayerRef) -> bool:
    """Create or update the function; True when it existed before."""
    answer = ctx.api.function(fn.name)
    want = desired(fn, layer)
    if answer is None:
        detail = f"{want.runtime}, {want.memory} MB, {want.timeout} s, layer {layer.render()}"
        if ctx.plan.create(f"function {fn.name}", detail):
            source, code = _code(ctx, fn)
            ctx.api.write(
                "CreateFunction",
                FunctionName=fn.name,
                Namespace=ctx.namespace,
                Type="Event",
                Runtime=want.runtime,
                Handler=want.handler,
                CodeSource=source,
                Code=code,
                **_configuration(fn, layer),
            )
            ctx.api.wait_function(fn.name)
        return False
    if not ctx.plan.dry_run and answer.get("Status") != "Active":
        ctx.api.wait_function(fn.name)  # an interrupted deploy may have left it Creating
    have = current(answer)
    if have.runtime != want.runtime:
        ctx.plan.block(
            f"function {fn.name} runtime: {have.runtime} -> {want.runtime}: SCF cannot change a "
            "function's runtime; delete the function, then deploy again"
        )
        return True
    changed = have.compare(want)
    if not ctx.plan.update(f"function {fn.name}", changed):
        return True
    fields = {diff.field for diff in changed}
    if fields & {"code", "handler"}:
        source, code = _code(ctx, fn)
        ctx.api.write(
            "UpdateFunctionCode",
            FunctionName=fn.name,
            Namespace=ctx.namespace,
            Handler=want.handler,
            CodeSource=source,
            **code,
        )
        ctx.api.wait_function(fn.name)
    if fields - {"handler"}:
        ctx.api.write(
            "UpdateFunctionConfiguration",
            FunctionName=fn.name,
            Namespace=ctx.namespace,
            **_configuration(fn, layer),
        )
        ctx.api.wait_function(fn.name)
    return True
