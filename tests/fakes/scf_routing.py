"""The fake SCF's triggers (timers, Function URLs) and custom domains, as tests/fakes/scf.py's
FakeScf serves them. What SCF answers, as its examples show: a timer created with a bare
cron lists as `{"cron": ...}`, `Enable` goes in as OPEN/CLOSE and comes out as 1/0, a
Function URL's description comes back with its URLs added.

A Function URL a custom domain maps paths to is bound to it: ListTriggers reports those
paths as its `BoundResources` (the schema's TriggerInfo: "the resources associated with
this trigger; for now only the custom domains of a Function URL",
`[{"domain": ..., "PathMatch": ...}]`), and DeleteTrigger refuses to delete it, until the
domain no longer maps it, with `FailedOperation.DeleteTrigger.UrlUsed`: the one code
tencentcloud-sdk-python-scf's errorcodes.py has for it (the URL is in use and cannot be
deleted), more precise than the generic `ResourceInUse`. That this is the code a domain's
binding gets is the fake's reading of the two; no document pairs them."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.scf_namespaces import Key, key_of
from tests.fakes.tencentcloud import TencentCloudError

TRIGGER_TYPES = ("cos", "cls", "timer", "ckafka", "http")
PROTOCOLS = ("HTTP", "HTTPS", "HTTP&HTTPS")
_CRON_FIELD = re.compile(r"^[0-9*/,\-?LW#A-Za-z]+$")
# A timer's name: CreateTrigger's TriggerName (tccli's api.json: letters, digits, - and _, at
# most 100; the timer trigger page, https://cloud.tencent.com/document/product/583/9708: and
# starting with a letter), and its argument: at most 4 KB (the same page).
_TIMER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
TIMER_ARGUMENT_BYTES = 4096
_PATH_MATCH = re.compile(r"^/(\*|([A-Za-z0-9._~\-]+/)*[A-Za-z0-9._~\-]+(/\*)?)?$")


def _error(code: str, message: str) -> TencentCloudError:
    return TencentCloudError(code, message)


def _enable(value: str | None) -> int:
    if value not in (None, "OPEN", "CLOSE"):
        raise _error("InvalidParameterValue.Enable", str(value))
    return 0 if value == "CLOSE" else 1


class RoutingActions:
    """Mixed into FakeScf: needs its `_function`, `triggers` and `domains`."""

    triggers: dict[Key, list[dict[str, Any]]]
    domains: dict[str, dict[str, Any]]
    appid: str

    def _function(self, params: dict[str, Any], *, active: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------ triggers

    def _trigger_desc(self, kind: str, raw: str, fn: dict[str, Any], name: str) -> str:
        if kind == "timer":
            cron = raw.split()
            if len(cron) != 7 or not all(_CRON_FIELD.match(field) for field in cron):
                raise _error("InvalidParameterValue.TriggerDesc", f"not a 7-field cron: {raw!r}")
            return json.dumps({"cron": raw})
        if kind == "http":
            try:
                desc = json.loads(raw)
            except ValueError as error:
                raise _error("InvalidParameterValue.TriggerDesc", raw) from error
            if desc.get("AuthType") not in ("NONE", "CAM"):
                raise _error("InvalidParameterValue.TriggerDesc", "AuthType is NONE or CAM")
            net = desc.get("NetConfig") or {}
            url = f"https://{self.appid}-{name}.ap-guangzhou.tencentscf.com"
            net["ExtranetUrl"] = url if net.get("EnableExtranet") else ""
            return json.dumps({**desc, "NetConfig": net})
        return raw

    def _find_trigger(self, params: dict[str, Any], fn: dict[str, Any]) -> dict[str, Any]:
        for trigger in self.triggers[key_of(fn)]:
            same = (trigger["TriggerName"], trigger["Type"]) == (
                params["TriggerName"],
                params["Type"],
            )
            if same and trigger["Qualifier"] == params.get("Qualifier", "$LATEST"):
                return trigger
        raise _error("ResourceNotFound.Trigger", f"{params['Type']} {params['TriggerName']}")

    def _bound(self, fn: dict[str, Any], trigger: dict[str, Any]) -> list[dict[str, str]]:
        """The custom domains' paths a Function URL serves: its BoundResources."""
        if trigger["Type"] != "http":
            return []
        url = (*key_of(fn), trigger["Qualifier"])
        return [
            {"domain": name, "PathMatch": endpoint["PathMatch"]}
            for name, domain in sorted(self.domains.items())
            for endpoint in domain["EndpointsConfig"]
            if (endpoint["Namespace"], endpoint["FunctionName"], endpoint["Qualifier"]) == url
        ]

    def _CreateTrigger(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        kind, name = params["Type"], params["TriggerName"]
        if kind not in TRIGGER_TYPES:
            raise _error("InvalidParameterValue.Type", kind)
        qualifier = params.get("Qualifier", "$LATEST")
        for trigger in self.triggers[key_of(fn)]:
            if trigger["Type"] == kind and trigger["TriggerName"] == name:
                raise _error("ResourceInUse.Trigger", f"{kind} {name}")
            if kind == trigger["Type"] == "http" and trigger["Qualifier"] == qualifier:
                raise _error("ResourceInUse.Trigger", f"a Function URL on {qualifier} already")
        if params.get("CustomArgument") and kind != "timer":
            raise _error("InvalidParameterValue.CustomArgument", "timers only")
        if kind == "timer" and not _TIMER_NAME.match(name):
            raise _error("InvalidParameterValue.TriggerName", name)
        if len(params.get("CustomArgument", "").encode()) > TIMER_ARGUMENT_BYTES:
            raise _error("InvalidParameterValue.CustomArgument", "over 4 KB")
        trigger = {
            "TriggerName": name,
            "Type": kind,
            "TriggerDesc": self._trigger_desc(kind, params.get("TriggerDesc", ""), fn, name),
            "Enable": _enable(params.get("Enable")),
            "Qualifier": qualifier,
            "CustomArgument": params.get("CustomArgument", ""),
            "Description": params.get("Description", ""),
            "AvailableStatus": "Available",
            "AddTime": "2026-12-05 00:00:00",
            "ModTime": "2026-12-05 00:00:00",
        }
        self.triggers[key_of(fn)].append(trigger)
        return {"TriggerInfo": trigger}

    def _ListTriggers(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params)
        found = self.triggers[key_of(fn)]
        offset, limit = params.get("Offset", 0), params.get("Limit", 20)
        page = []
        for trigger in found[offset : offset + limit]:
            bound = self._bound(fn, trigger)
            page.append({**trigger, "BoundResources": json.dumps(bound)} if bound else trigger)
        return {"Triggers": page, "TotalCount": len(found)}

    def _UpdateTrigger(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        if params["Type"] not in ("timer", "ckafka", "http"):
            raise _error("InvalidParameterValue.Type", params["Type"])
        trigger = self._find_trigger(params, fn)
        if "TriggerDesc" in params:
            trigger["TriggerDesc"] = self._trigger_desc(
                params["Type"], params["TriggerDesc"], fn, params["TriggerName"]
            )
        if "Enable" in params:  # "if given, may not be empty": _enable refuses ""
            trigger["Enable"] = _enable(params["Enable"])
        if len(params.get("CustomArgument", "").encode()) > TIMER_ARGUMENT_BYTES:
            raise _error("InvalidParameterValue.CustomArgument", "over 4 KB")
        # Left out: kept; given empty: emptied (UpdateTrigger's text in the schema).
        for key in ("CustomArgument", "Description"):
            trigger[key] = params.get(key, trigger[key])
        return {}

    def _DeleteTrigger(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        trigger = self._find_trigger(params, fn)
        bound = self._bound(fn, trigger)
        if bound:
            paths = ", ".join(f"{b['domain']}{b['PathMatch']}" for b in bound)
            raise _error("FailedOperation.DeleteTrigger.UrlUsed", f"the URL serves {paths}")
        self.triggers[key_of(fn)].remove(trigger)
        return {}

    # ------------------------------------------------------------ custom domains

    def _check_domain(self, params: dict[str, Any], current: dict[str, Any]) -> None:
        merged = {**current, **params}
        if merged["Protocol"] not in PROTOCOLS:
            raise _error("InvalidParameterValue.Protocol", merged["Protocol"])
        certificate = (merged.get("CertConfig") or {}).get("CertificateId")
        if "HTTPS" in merged["Protocol"] and not certificate:
            raise _error("InvalidParameterValue.CertConfig", "HTTPS needs a certificate")
        seen: set[str] = set()
        for endpoint in merged["EndpointsConfig"]:
            path = endpoint["PathMatch"]
            if not _PATH_MATCH.match(path) or path in seen:
                raise _error("InvalidParameterValue.PathMatch", path)
            seen.add(path)
            fn = self._function(endpoint, active=True)
            urls = [t for t in self.triggers[key_of(fn)] if t["Type"] == "http"]
            if endpoint["Qualifier"] not in [t["Qualifier"] for t in urls]:
                raise _error(
                    "ResourceNotFound.Trigger",
                    f"{fn['FunctionName']} has no Function URL on {endpoint['Qualifier']}",
                )

    def _CreateCustomDomain(self, params: dict[str, Any]) -> dict[str, Any]:
        domain = params["Domain"]
        if "*" in domain:
            raise _error("InvalidParameterValue.Domain", "no wildcard domains")
        if domain in self.domains:
            raise _error("ResourceInUse.Domain", domain)
        self._check_domain(params, {})
        self.domains[domain] = {
            "WafConfig": {"WafOpen": "CLOSE", "WafInstanceId": ""},
            "CertConfig": {"CertificateId": ""},
            "Tags": [],
            **{k: v for k, v in params.items() if k != "Tags"},
        }
        return {}

    def _GetCustomDomain(self, params: dict[str, Any]) -> dict[str, Any]:
        found = self.domains.get(params.get("Domain", ""))
        if found is None:
            raise _error("FailedOperation.Domain.UnExist", f"domain {params.get('Domain')}")
        return json.loads(json.dumps(found))

    def _UpdateCustomDomain(self, params: dict[str, Any]) -> dict[str, Any]:
        current = self.domains.get(params["Domain"])
        if current is None:
            raise _error("FailedOperation.Domain.UnExist", f"domain {params['Domain']}")
        self._check_domain(params, current)
        current.update(params)
        return {}
