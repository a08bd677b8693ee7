"""The stage's SCF namespace (infra.manifest: `<app>-<stage>` unless SCF_NAMESPACE names
one): created when ListNamespaces does not list it, before any function, which SCF refuses
in a namespace that does not exist. A namespace holds 50 functions and a region 5
namespaces (DEPLOY-NOTES section 5), so each stage has its own.

Both limits are checked here, in the plan, before any write: SCF would refuse the 51st
CreateFunction after the layer and the functions before it were changed, and a sixth
CreateNamespace. A namespace that would hold more than 50 functions after the deploy (what
ListFunctions lists there now, and the functions the plan creates), or a namespace to create
in a region that has 5, is a blocker naming the counts and what to do, so the plan exits 2
and the apply stops before its first write.

The deployer never deletes a function, nor moves one. A stage deployed before into another
namespace (`default`, where every stage went once) keeps its functions there, running (their
timers fire, their Function URLs answer) after a deploy makes the stage anew in its own and
turns the custom domain to it: every plan and apply names each of them, a `>` line, until
they are deleted by hand (README "Deploy", "Moving a stage to its own namespace"). Only the
functions of this stage's own names count, so another stage's are never named.
"""

from __future__ import annotations

from infra.deploy.context import Context

FUNCTIONS_PER_NAMESPACE = 50
NAMESPACES_PER_REGION = 5


def reconcile(ctx: Context) -> set[str]:
    """The functions the namespace holds before this deploy (none when it is created)."""
    namespaces = ctx.api.namespaces()
    _left_behind(ctx, [ns for ns in namespaces if ns != ctx.namespace])
    exists = ctx.namespace in namespaces
    if not exists and len(namespaces) >= NAMESPACES_PER_REGION:
        ctx.plan.block(
            f"namespace {ctx.namespace} cannot be created: the region has {len(namespaces)}"
            f" namespaces ({', '.join(sorted(namespaces))}), SCF's most is"
            f" {NAMESPACES_PER_REGION}; delete one no stage uses, or name one of them in"
            " SCF_NAMESPACE"
        )
    held = set(ctx.api.functions_in(ctx.namespace)) if exists else set()
    _check_room(ctx, held)
    if exists:
        ctx.plan.unchanged()
    elif ctx.plan.create(f"namespace {ctx.namespace}"):
        ctx.write("CreateNamespace", Namespace=ctx.namespace)
    return held


def _check_room(ctx: Context, held: set[str]) -> None:
    """Block a deploy after which the namespace would hold more functions than SCF allows;
    `held` is what it holds now."""
    ours = {fn.name for fn in ctx.target.functions}
    created = ours - held
    total = len(held) + len(created)
    if total <= FUNCTIONS_PER_NAMESPACE:
        return
    others = sorted(held - ours)
    if len(ours) > FUNCTIONS_PER_NAMESPACE:
        advice = f"serverless.yml declares {len(ours)}, more than any namespace holds"
    else:
        advice = "delete those not in serverless.yml, or name another namespace in SCF_NAMESPACE"
    ctx.plan.block(
        f"namespace {ctx.namespace} would hold {total} functions after this deploy, over SCF's"
        f" {FUNCTIONS_PER_NAMESPACE}: it holds {len(held)}, {len(others)} of them not in"
        f" serverless.yml ({', '.join(others) or 'none'}), and the deploy creates"
        f" {len(created)}; {advice}"
    )


def _left_behind(ctx: Context, others: list[str]) -> None:
    manifest = ctx.target.manifest
    ours = {fn.name for fn in ctx.target.functions}
    prefix = f"{manifest.app}-{manifest.stage}-"
    for namespace in sorted(others):
        for name in sorted(set(ctx.api.functions_in(namespace, prefix)) & ours):
            ctx.plan.note(
                f"left in namespace {namespace}: function {name}, still running; delete it"
                f" once the stage is deployed in {ctx.namespace}"
            )
