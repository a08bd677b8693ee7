"""The fake SCF's namespaces, as tests/fakes/scf.py's FakeScf serves them, and ListFunctions.

What the API documents of them (parameters and answers: the official schema, tccli's
api.json; error codes: tencentcloud-sdk-python-scf's errorcodes.py, and the codes its Go
twin lists for CreateNamespace):

- every account has the namespace `default`, which CreateNamespace refuses to create
  (InvalidParameterValue.DefaultNamespace);
- a name is letters, digits, `-` and `_`, at most 30 of them
  (InvalidParameterValue.NamespaceInvalid, "Namespace为英文字母、数字、-_ 符号组成", "长度30");
- a name taken is ResourceInUse.Namespace; a region holds 5 namespaces (DEPLOY-NOTES section
  5), the sixth is LimitExceeded.Namespace;
- a namespace holds 50 functions (DEPLOY-NOTES section 5; GetAccount's example lists
  `"FunctionsCount":50` per namespace), the 51st is LimitExceeded.Function;
- a function named in a namespace that does not exist is ResourceNotFound.Namespace.

ListNamespaces answers {Namespaces: [{Name, Description, AddTime, ModTime, Type}],
TotalCount}, `Limit` 20 by default, its SearchKey a keyword match on Namespace or
Description (tccli's examples.json). ListFunctions answers the Function objects of one
namespace (`default` when none is named), its SearchKey a keyword match on the name.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.fakes.tencentcloud import TencentCloudError

DEFAULT = "default"
NAMESPACES_PER_REGION = 5
FUNCTIONS_PER_NAMESPACE = 50
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
# A function as ListFunctions shows it: the members of the schema's `Function` object.
_LISTED = (
    "ModTime",
    "AddTime",
    "Runtime",
    "FunctionName",
    "Namespace",
    "Status",
    "StatusDesc",
    "Description",
    "Type",
    "StatusReasons",
)
Key = tuple[str, str]  # (namespace, function name)


def key_of(fn: dict[str, Any]) -> Key:
    return fn["Namespace"], fn["FunctionName"]


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    offset, limit = params.get("Offset", 0), params.get("Limit", 20)
    return items[offset : offset + limit]


class NamespaceActions:
    """Mixed into FakeScf: needs its `namespaces` and `functions`."""

    namespaces: dict[str, dict[str, Any]]
    functions: dict[Key, dict[str, Any]]

    def add_namespace(self, name: str, description: str = "", kind: str = "default") -> None:
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        self.namespaces[name] = {
            "Name": name,
            "Description": description,
            "AddTime": now,
            "ModTime": now,
            "Type": kind,
        }

    def namespace_of(self, params: dict[str, Any]) -> str:
        """The namespace a request names (`default` when none), refused when there is none
        of that name."""
        namespace = params.get("Namespace") or DEFAULT
        if namespace not in self.namespaces:
            raise TencentCloudError("ResourceNotFound.Namespace", f"namespace {namespace}")
        return namespace

    def check_room(self, namespace: str) -> None:
        """Refuse a function over the namespace's limit."""
        held = sum(1 for key in self.functions if key[0] == namespace)
        if held >= FUNCTIONS_PER_NAMESPACE:
            raise TencentCloudError(
                "LimitExceeded.Function",
                f"namespace {namespace} holds {held} functions, the most it may",
            )

    def _CreateNamespace(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Namespace"]
        if name == DEFAULT:
            raise TencentCloudError("InvalidParameterValue.DefaultNamespace", name)
        if not _NAME.match(name):
            raise TencentCloudError(
                "InvalidParameterValue.NamespaceInvalid",
                f"{name!r}: letters, digits, - and _, at most 30",
            )
        if name in self.namespaces:
            raise TencentCloudError("ResourceInUse.Namespace", name)
        if len(self.namespaces) >= NAMESPACES_PER_REGION:
            raise TencentCloudError("LimitExceeded.Namespace", f"{len(self.namespaces)} already")
        self.add_namespace(name, params.get("Description", ""))
        return {}

    def _ListNamespaces(self, params: dict[str, Any]) -> dict[str, Any]:
        found = sorted(self.namespaces.values(), key=lambda ns: ns["Name"])
        for search in params.get("SearchKey") or []:
            field = {"Namespace": "Name", "Description": "Description"}.get(search["Key"])
            if field is None:
                raise TencentCloudError("InvalidParameterValue.SearchKey", search["Key"])
            found = [ns for ns in found if search["Value"] in ns[field]]
        return {"Namespaces": [dict(ns) for ns in _page(found, params)], "TotalCount": len(found)}

    def _ListFunctions(self, params: dict[str, Any]) -> dict[str, Any]:
        for unsupported in ("Filters", "Description"):
            if unsupported in params:
                raise TencentCloudError("UnsupportedOperation", f"the fake has no {unsupported}")
        namespace = self.namespace_of(params)
        search = params.get("SearchKey") or ""
        found = sorted(
            (fn for key, fn in self.functions.items() if key[0] == namespace),
            key=lambda fn: str(fn["FunctionName"]),
        )
        found = [fn for fn in found if search in fn["FunctionName"]]
        listed = [{k: fn[k] for k in _LISTED if k in fn} for fn in _page(found, params)]
        return {"Functions": listed, "TotalCount": len(found)}
