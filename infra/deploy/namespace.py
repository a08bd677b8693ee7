"""The stage's SCF namespace (infra.manifest: `<app>-<stage>` unless SCF_NAMESPACE names
one): created when ListNamespaces does not list it, before any function, which SCF refuses
in a namespace that does not exist. A namespace holds 50 functions and a region 5
namespaces (DEPLOY-NOTES section 5), so each stage has its own.

The deployer never deletes a function, nor moves one. A stage deployed before into another
namespace (`default`, where every stage went once) keeps its functions there, running (their
timers fire, their Function URLs answer) after a deploy makes the stage anew in its own and
turns the custom domain to it: every plan and apply names each of them, a `>` line, until
they are deleted by hand (README "Deploy", "Moving a stage to its own namespace"). Only the
functions of this stage's own names count, so another stage's are never named.
"""

from __future__ import annotations

from infra.deploy.context import Context


def reconcile(ctx: Context) -> None:
    namespaces = ctx.api.namespaces()
    _left_behind(ctx, [ns for ns in namespaces if ns != ctx.namespace])
    if ctx.namespace in namespaces:
        ctx.plan.unchanged()
    elif ctx.plan.create(f"namespace {ctx.namespace}"):
        ctx.write("CreateNamespace", Namespace=ctx.namespace)


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
