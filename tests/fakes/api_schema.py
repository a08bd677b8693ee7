"""A Tencent Cloud API request checked against the product's official schema (tccli's
`api.json`, tests/fakes/schemas/README.md): the action must exist, every parameter must be one
the action's request object declares, every required one must be there, and each value must
have the declared type, down through nested objects and lists. A request that does not fit
is refused with the error code the API itself answers for it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.fakes.tencentcloud import TencentCloudError

SCHEMAS = Path(__file__).parent / "schemas"

# The JSON types the wire carries for each scalar the schema names (a bool is no int here);
# datetime and the like travel as strings.
_SCALARS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "int64": (int,),
    "uint64": (int,),
    "float": (int, float),
    "bool": (bool,),
}


class ApiSchema:
    def __init__(self, document: dict[str, Any]) -> None:
        self.actions: dict[str, Any] = document["actions"]
        self.objects: dict[str, Any] = document["objects"]
        self.version: str = document["metadata"]["apiVersion"]

    def validate(self, action: str, params: dict[str, Any]) -> None:
        """Raise the API's error for a request that does not fit the schema."""
        if action not in self.actions:
            raise TencentCloudError("InvalidAction", f"The action `{action}` is not supported")
        self._object(self.actions[action]["input"], params, "")

    def _object(self, name: str, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise TencentCloudError(
                "InvalidParameter", f"The parameter `{path}` should be an object ({name})"
            )
        members = {m["name"]: m for m in self.objects[name].get("members", [])}
        for key in value:
            if key not in members:
                raise TencentCloudError(
                    "UnknownParameter", f"The parameter `{path}{key}` is not recognized"
                )
        for key, member in members.items():
            if key not in value or value[key] is None:
                if member.get("required"):
                    missing = f"The request is missing a required parameter `{path}{key}`"
                    raise TencentCloudError("MissingParameter", missing)
                continue
            self._member(member, value[key], f"{path}{key}")

    def _member(self, member: dict[str, Any], value: Any, path: str) -> None:
        kind, item = member["type"], member["member"]
        if kind == "list":
            if not isinstance(value, list):
                wrong = f"The parameter `{path}` should be a list"
                raise TencentCloudError("InvalidParameter", wrong)
            for index, element in enumerate(value):
                self._value(item, element, f"{path}.{index}")
        else:
            self._value(item, value, path)  # an object's name, or the scalar's own type

    def _value(self, kind: str, value: Any, path: str) -> None:
        if kind in self.objects:
            self._object(kind, value, f"{path}.")
            return
        expected = _SCALARS.get(kind, (str,))
        wrong = isinstance(value, bool) and bool not in expected
        if wrong or not isinstance(value, expected):
            raise TencentCloudError(
                "InvalidParameter", f"The parameter `{path}` should be of type {kind}"
            )
        if kind == "uint64" and value < 0:
            raise TencentCloudError("InvalidParameterValue", f"The parameter `{path}` is negative")


@cache
def load(product: str, version: str) -> ApiSchema:
    """The schema of `product` (e.g. "scf") at API version directory `version` (v20180416)."""
    path = SCHEMAS / product / version / "api.json"
    return ApiSchema(json.loads(path.read_text(encoding="utf-8")))
