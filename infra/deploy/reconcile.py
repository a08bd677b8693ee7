"""One walk over the account, resource by resource, in the order the account needs them:
the stage's namespace (and the functions of the stage left in another, and SCF's limits on
functions per namespace and namespaces per region, checked before any write); the
namespace's reserved concurrency, its total checked against the region's quota; the layer;
each `invoke_after_deploy` function (db-migrate), which the apply then invokes; every other
function (its code and configuration, its Function URL, its timers, its async config); the
functions' reserved concurrency, those lowered first; then the custom domain that points at
the URLs; and last the URLs of functions that should have none, which SCF refuses to
delete while the domain still maps their paths; and once every other change is made, the
layer's old versions that no function names (infra.deploy.layer `prune`).

So the schema is migrated before any function runs the code that needs it, and a migration
that fails stops the deploy with every other function still on its previous version (a
migration must therefore leave the schema usable by the code before it: add, and drop or
rename only once no deployed code uses the old form).

The plan and the apply are the same walk: each step reads what is there, records its
change in the Plan, and sends the writes only in an apply. So a plan never writes, and an
apply does exactly what its plan said (values made by the apply itself, such as the number
of a new layer version, show as `(new)` in the plan). Each step's changes are settled in the
Plan when it returns, so a failure reports exactly what was made before it; a change SCF
has accepted a write of (Context.write) is reported begun rather than not done.
"""

from __future__ import annotations

from typing import Any

from infra.deploy import concurrency, domain, functions, invocation, layer, namespace
from infra.deploy.context import Context
from infra.deploy.layer import LayerRef
from infra.deploy.target import FunctionTarget


def walk(ctx: Context) -> None:
    held = namespace.reconcile(ctx)
    reserved = concurrency.survey(ctx, held)
    ctx.plan.settle()
    layer_ref = layer.reconcile(ctx)
    ctx.plan.settle()
    first = [fn for fn in ctx.target.functions if fn.spec.invoke_after_deploy]
    qualifiers: dict[str, str] = {}
    stale: list[tuple[FunctionTarget, list[dict[str, Any]]]] = []  # URLs to remove, by function
    # Each function's reservation before this deploy, None for one it creates: one SCF
    # failed to create was deleted and created anew, without its reservation.
    found: dict[str, int | None] = {}
    for fn in first:
        existed = _function(ctx, fn, layer_ref, qualifiers, stale)
        found[fn.name] = reserved.get(fn.name) if existed else None
    for fn in first:
        invocation.invoke_after_deploy(ctx, fn)
    for fn in ctx.target.functions:
        if fn not in first:
            existed = _function(ctx, fn, layer_ref, qualifiers, stale)
            found[fn.name] = reserved.get(fn.name) if existed else None
    concurrency.reconcile_all(ctx, found)
    domain.reconcile(ctx, qualifiers)
    ctx.plan.settle()
    for fn, urls in stale:
        invocation.remove_urls(ctx, fn, urls)
        ctx.plan.settle()
    if not ctx.plan.blocked:  # an apply that made every change: no function is left behind
        layer.prune(ctx, layer_ref)
        ctx.plan.settle()


def _function(
    ctx: Context,
    fn: FunctionTarget,
    layer_ref: LayerRef,
    qualifiers: dict[str, str],
    stale: list[tuple[FunctionTarget, list[dict[str, Any]]]],
) -> bool:
    """The function itself, then how it is invoked; the qualifier its URL serves goes into
    `qualifiers`, a URL it should no longer have into `stale`. Whether the function existed
    before this deploy."""
    existed = functions.reconcile(ctx, fn, layer_ref)
    ctx.plan.settle()
    # A function the plan would create has no triggers yet, and cannot be asked.
    live = existed or not ctx.plan.dry_run
    triggers = ctx.api.triggers(fn.name) if live else []
    qualifier = invocation.function_url(ctx, fn, triggers)
    ctx.plan.settle()
    if qualifier is not None:
        qualifiers[fn.spec.name] = qualifier
    urls = invocation.stale_urls(fn, triggers)
    if urls:
        stale.append((fn, urls))
    invocation.timers(ctx, fn, triggers)
    ctx.plan.settle()
    invocation.async_config(ctx, fn, existed)
    ctx.plan.settle()
    return existed
