"""The custom domain: `CreateCustomDomain`, or `UpdateCustomDomain` when `GetCustomDomain`
differs in protocol, certificate or path mapping.

The mapping is infra.routes' (the paths of the routes each HTTP function's handler serves),
each path sent to its function's Function URL qualifier (the one its `http` trigger reports,
`$LATEST` for one this deploy creates), with no path rewrite: a function receives the path
as the client sent it, as the local cloud delivers it. Mappings are compared as a set, path
by path; a path rewrite added by hand is a difference. WAF settings are left alone, and so is
the certificate of a domain whose serverless.yml names none (plain HTTP, the only protocol
that needs none): `UpdateCustomDomain` without `CertConfig` keeps the one the domain has, so
comparing it would be a change that every deploy makes again.
"""

from __future__ import annotations

from typing import Any

from infra.deploy.context import Context
from infra.deploy.plan import Diff, diffs
from infra.deploy.target import QUALIFIER


def _rules(rules: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('Path')} {r.get('Type')} {r.get('Rewrite')}" for r in rules)


def _paths(endpoints: list[dict[str, Any]]) -> dict[str, str]:
    paths = {}
    for endpoint in endpoints:
        where = f"{endpoint['Namespace']}/{endpoint['FunctionName']}:{endpoint['Qualifier']}"
        if endpoint.get("PathRewrite"):
            where += f" rewritten {_rules(endpoint['PathRewrite'])}"
        paths[endpoint["PathMatch"]] = where
    return paths


def reconcile(ctx: Context, qualifiers: dict[str, str]) -> None:
    """`qualifiers`: each HTTP function's Function URL qualifier, by its declared name."""
    domain = ctx.target.manifest.domain
    if domain is None:
        return
    endpoints = [
        {
            "Namespace": ctx.namespace,
            "FunctionName": ctx.target.deployed(mapping.function),
            "Qualifier": qualifiers.get(mapping.function, QUALIFIER),
            "PathMatch": mapping.pattern,
        }
        for mapping in ctx.target.mappings
    ]
    params: dict[str, Any] = {
        "Domain": domain.name,
        "Protocol": domain.protocol,
        "EndpointsConfig": endpoints,
    }
    if domain.certificate_id:
        params["CertConfig"] = {"CertificateId": domain.certificate_id}
    what = f"domain {domain.name}"
    answer = ctx.api.read_or_none("GetCustomDomain", Domain=domain.name)
    if answer is None:
        if ctx.plan.create(what, f"{domain.protocol}, {len(endpoints)} paths"):
            ctx.write("CreateCustomDomain", **params)
        return
    fields: list[tuple[str, object, object]] = [
        ("protocol", answer.get("Protocol"), domain.protocol)
    ]
    if domain.certificate_id:
        certificate = (answer.get("CertConfig") or {}).get("CertificateId") or None
        fields.append(("certificate", certificate, domain.certificate_id))
    changed = diffs(fields)
    old, new = _paths(answer.get("EndpointsConfig") or []), _paths(endpoints)
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            changed.append(Diff(f"path {path}", old.get(path), new.get(path)))
    if ctx.plan.update(what, changed):
        ctx.write("UpdateCustomDomain", **params)
