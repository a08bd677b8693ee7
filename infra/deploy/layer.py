"""The common layer: one version per distinct content, found again by its content's hash.

A version is published only when no existing version of the layer has this content. The
sha256 of the layer zip is written into the version's Description (`..., content sha256
<hex>`) and found there with `ListLayerVersions`: one read for every version, where
`GetLayerVersion`'s `CodeSha256` would cost a read per version and its encoding is not
documented. The zip goes through COS (it is larger than the API's 10 MB request limit).
A version SCF failed to publish (or is deleting, or deleted) is never matched: the content is
published again (infra.deploy.status).

Old versions are deleted (`prune`) once an apply has made every other change: SCF holds at
most 200 versions of a layer ("Number of versions per layer: 200",
https://cloud.tencent.com/document/product/583/11637), and each deploy of new content
publishes one. The newest KEPT_VERSIONS stay, and so does every version a function of any
namespace names (GetFunction's `Layers`; ListFunctions does not list them): a deleted
version "cannot be associated with a function, but the deletion does not affect functions
that are referencing this layer" (https://cloud.tencent.com/document/api/583/41387), so a
function that names it keeps running, but a configuration update that sends its layers
again would be refused (inferred). A version being published (by another deploy) or already
being deleted is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.deploy import status
from infra.deploy.context import Context
from infra.deploy.scf import ApiError
from infra.deploy.target import hash_note, noted_hash

# The newest versions kept whether or not a function names them: those of the last deploys,
# so a function can still be moved back to one by hand (`UpdateFunctionConfiguration`), a
# deleted version being one no function can take again. Far below SCF's 200 per layer.
KEPT_VERSIONS = 10
_GOING = ("Deleting", "Deleted")  # neither kept nor deleted again


@dataclass(frozen=True)
class LayerRef:
    name: str
    version: int | None  # None: published by the apply this plan previews

    def render(self) -> str:
        return f"{self.name}:{self.version if self.version is not None else '(new)'}"


def _matches(version: dict[str, Any], sha256: str, runtimes: tuple[str, ...]) -> bool:
    return (
        noted_hash("content", version.get("Description")) == sha256
        and set(runtimes) <= set(version.get("CompatibleRuntimes") or [])
        and version.get("Status") not in status.LAYER_UNUSABLE
    )


def reconcile(ctx: Context) -> LayerRef:
    spec, package, runtimes = ctx.target.manifest.layer, ctx.target.layer, ctx.target.runtimes
    versions = sorted(
        ctx.api.layer_versions(spec.name), key=lambda v: int(v["LayerVersion"]), reverse=True
    )
    for version in versions:
        if _matches(version, package.sha256, runtimes):
            ctx.plan.unchanged()
            number = int(version["LayerVersion"])
            if not ctx.plan.dry_run and version.get("Status") != "Active":
                ctx.api.wait_layer(spec.name, number)
            return LayerRef(spec.name, number)
    detail = f"content sha256 {package.sha256[:12]}, {package.size} bytes, {', '.join(runtimes)}"
    if not ctx.plan.create(f"layer {spec.name}", detail):
        return LayerRef(spec.name, None)
    key = ctx.store.key(f"layer/{spec.name}", package.sha256)
    ctx.store.upload(key, package.path)
    description = ", ".join(filter(None, [spec.description, hash_note("content", package.sha256)]))
    answer = ctx.write(
        "PublishLayerVersion",
        LayerName=spec.name,
        CompatibleRuntimes=list(runtimes),
        Content=ctx.store.location(key),
        Description=description,
    )
    number = int(answer["LayerVersion"])
    ctx.api.wait_layer(spec.name, number)
    return LayerRef(spec.name, number)


def named_versions(ctx: Context, layer: LayerRef) -> set[int]:
    """The versions of the layer some function names once the apply is done: this deploy's
    for its own functions, what GetFunction shows for every other function of every
    namespace (in an apply, for its own functions too)."""
    ours = {fn.name for fn in ctx.target.functions}
    named = {layer.version} if layer.version is not None else set()
    for namespace in ctx.api.namespaces():
        for name in ctx.api.functions_in(namespace):
            if ctx.plan.dry_run and namespace == ctx.namespace and name in ours:
                continue  # the apply moves it to `layer`
            answer = ctx.api.function(name, namespace) or {}
            named |= {
                int(ref["LayerVersion"])
                for ref in answer.get("Layers") or []
                if ref.get("LayerName") == layer.name
            }
    return named


def prune(ctx: Context, layer: LayerRef) -> None:
    """Delete the layer's versions older than the newest KEPT_VERSIONS (this deploy's new
    one counted) that no function names."""
    versions = [v for v in ctx.api.layer_versions(layer.name) if v.get("Status") not in _GOING]
    numbers = sorted((int(v["LayerVersion"]) for v in versions), reverse=True)
    kept = KEPT_VERSIONS - (1 if layer.version is None else 0)  # the plan's (new) is newest
    old = {int(v["LayerVersion"]) for v in versions if v.get("Status") != "Publishing"}
    old &= set(numbers[kept:])
    if not old:
        return
    old -= named_versions(ctx, layer)
    for number in sorted(old):
        if not ctx.plan.remove(f"layer version {layer.name}:{number}"):
            continue
        try:
            ctx.write("DeleteLayerVersion", LayerName=layer.name, LayerVersion=number)
        except ApiError as error:
            if not error.absent:  # deleted meanwhile: what this change wanted
                raise
