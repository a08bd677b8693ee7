"""Each function's reserved concurrency: the most instances SCF runs of it at once, from
serverless.yml's `max_instances` (README "Deploy", "Concurrency caps").

SCF counts it in memory, not instances ("最大独占配额", tccli's api.json):
`PutReservedConcurrencyConfig` {FunctionName, ReservedConcurrencyMem, Namespace} reserves
`max_instances x memory` MB for the function alone, and it runs no more instances than fit;
`GetReservedConcurrencyConfig` answers `ReservedMem` (null, or 0, where none is set). A
function whose reservation differs is updated, and one without any gets one (a creation in
the plan); a memory change moves the MB with it, after the function's own update. The
reservations are put once every function is deployed, those lowered first: SCF checks each
Put against the others' reservations as they are at that moment, so a raise put before
another function's lowering could pass what SCF allows although the deploy's total does
not. A
function without `max_instances` is not managed: a reservation made by hand stays, and the
deployer never calls `DeleteReservedConcurrencyConfig`.

The reserved memory of every function together may not pass the account's concurrency quota
in the region less 12800 MB, which SCF keeps for the functions with none (the
ReservedConcurrencyMem member's note). The quota is DEPLOY-NOTES section 5's, 128000 MB in
ap-guangzhou, ap-shanghai, ap-beijing, ap-chengdu and ap-hongkong and 64000 MB elsewhere
(a quota raised by a ticket is not seen). `survey` checks it in the plan, before any write:
the namespace's total after the deploy (the reservations of serverless.yml, and those of the
namespace's other functions as they are) over that is a blocker naming each function and its
MB, so the apply stops before its first write rather than at the Put that SCF refuses. Other
namespaces (other stages) of the region draw on the same quota, and are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from infra.deploy.context import Context
from infra.deploy.plan import Diff
from infra.deploy.target import FunctionTarget

QUOTA_MB = 64000
LARGE_REGIONS = ("ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-chengdu", "ap-hongkong")
LARGE_QUOTA_MB = 128000
UNRESERVED_MB = 12800


def region_quota_mb(region: str) -> int:
    return LARGE_QUOTA_MB if region in LARGE_REGIONS else QUOTA_MB


@dataclass(frozen=True)
class Cap:
    """A function's `max_instances` as SCF takes it."""

    instances: int
    memory_mb: int

    @classmethod
    def of(cls, fn: FunctionTarget) -> Cap | None:
        limit = fn.spec.max_instances
        return None if limit is None else cls(limit, fn.spec.memory_mb)

    @property
    def reserved_mb(self) -> int:
        return self.instances * self.memory_mb

    def render(self) -> str:
        return f"{self.reserved_mb} MB ({self.instances} x {self.memory_mb} MB)"


def _reserved(ctx: Context, name: str) -> int | None:
    answer = ctx.api.read_or_none(
        "GetReservedConcurrencyConfig", FunctionName=name, Namespace=ctx.namespace
    )
    return int((answer or {}).get("ReservedMem") or 0) or None


def survey(ctx: Context, held: set[str]) -> dict[str, int]:
    """The reservations of the namespace's functions (`held`: those it holds now), by name;
    blocks a deploy after which they would total more than SCF allows. Reads nothing when
    serverless.yml caps no function."""
    caps = {fn.name: cap for fn in ctx.target.functions if (cap := Cap.of(fn)) is not None}
    if not caps:
        return {}
    current = {name: mb for name in sorted(held) if (mb := _reserved(ctx, name)) is not None}
    after = {**current, **{name: cap.reserved_mb for name, cap in caps.items()}}
    total = sum(after.values())
    quota = region_quota_mb(ctx.api.region)
    if total > quota - UNRESERVED_MB:
        listed = ", ".join(
            f"{name} {caps[name].render()}"
            if name in caps
            else f"{name} {mb} MB (not from serverless.yml)"
            for name, mb in sorted(after.items())
        )
        ctx.plan.block(
            f"reserved concurrency in namespace {ctx.namespace} would total {total} MB, over"
            f" the {quota - UNRESERVED_MB} MB SCF allows in {ctx.api.region} (its {quota} MB"
            f" quota less {UNRESERVED_MB} MB kept for unreserved functions): {listed}; lower"
            " max_instances in serverless.yml, or a reservation not from it"
        )
    return current


def reconcile_all(ctx: Context, found: Mapping[str, int | None]) -> None:
    """Every function's reservation, those lowered first, each in serverless.yml's order
    otherwise. `found`: each function's reservation in MB before this deploy, by name."""

    def raised(fn: FunctionTarget) -> bool:
        cap = Cap.of(fn)
        return cap is None or cap.reserved_mb >= (found[fn.name] or 0)

    for fn in sorted(ctx.target.functions, key=raised):
        reconcile(ctx, fn, found[fn.name])
        ctx.plan.settle()


def reconcile(ctx: Context, fn: FunctionTarget, current: int | None) -> None:
    """`current`: the function's reservation in MB before this deploy (None: none, or a
    function this deploy creates)."""
    cap = Cap.of(fn)
    if cap is None:
        return
    what = f"concurrency {fn.name}"
    if current is None:
        if not ctx.plan.create(what, f"at most {cap.instances} instances: {cap.render()}"):
            return
    elif current == cap.reserved_mb:
        ctx.plan.unchanged()
        return
    elif not ctx.plan.update(what, [Diff("reserved", f"{current} MB", cap.render())]):
        return
    ctx.write(
        "PutReservedConcurrencyConfig",
        FunctionName=fn.name,
        Namespace=ctx.namespace,
        ReservedConcurrencyMem=cap.reserved_mb,
    )
