"""The common layer: one version per distinct content, found again by its content's hash.

A version is published only when no existing version of the layer has this content. The
sha256 of the layer zip is written into the version's Description (`..., content sha256
<hex>`) and found there with `ListLayerVersions`: one read for every version, where
`GetLayerVersion`'s `CodeSha256` would cost a read per version and its encoding is not
documented. The zip goes through COS (it is larger than the API's 10 MB request limit).
A version SCF failed to publish (or is deleting, or deleted) is never matched: the content is
published again (infra.deploy.status). Old versions stay (SCF keeps 200 per layer): delete
them by hand when they are no longer named by any function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.deploy import status
from infra.deploy.context import Context
from infra.deploy.target import hash_note, noted_hash


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
