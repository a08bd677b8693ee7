"""One walk over the account, resource by resource, in the order the account needs them:
the layer, then each function (its code and configuration, its Function URL, its timers,
its async config), then the custom domain that points at the URLs.

The plan and the apply are the same walk: each step reads what is there, records its
change in the Plan, and sends the writes only in an apply. So a plan never writes, and an
apply does exactly what its plan said (values made by the apply itself, such as the number
of a new layer version, show as `(new)` in the plan).
"""

from __future__ import annotations

from infra.deploy import domain, functions, invocation, layer
from infra.deploy.context import Context


def walk(ctx: Context) -> None:
    layer_ref = layer.reconcile(ctx)
    qualifiers: dict[str, str] = {}
    for fn in ctx.target.functions:
        existed = functions.reconcile(ctx, fn, layer_ref)
        # A function the plan would create has no triggers yet, and cannot be asked.
        live = existed or not ctx.plan.dry_run
        triggers = ctx.api.triggers(fn.name) if live else []
        qualifier = invocation.function_url(ctx, fn, triggers)
        if qualifier is not None:
            qualifiers[fn.spec.name] = qualifier
        invocation.timers(ctx, fn, triggers)
        invocation.async_config(ctx, fn, existed)
    domain.reconcile(ctx, qualifiers)
