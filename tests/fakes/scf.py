"""A fake of SCF's state behind FakeTencentCloud: namespaces (tests/fakes/scf_namespaces.py:
`default` and those CreateNamespace made, each holding at most 50 functions), functions
(Creating, then Active a moment later; Updating after each update), each one of its
namespace, layers and their versions (Publishing, then Active; DeleteLayerVersion takes one
away, its number never reused), triggers, async invoke
configs, reserved concurrency (tests/fakes/scf_concurrency.py), custom domains, and Invoke.

Every request is first checked against the official schema (tests/fakes/api_schema.py), then
against what the API documents of its values: a function's type (Event, or HTTP for a web
function, which alone may have no handler and may have ProtocolType WS, whose WSParams'
IdleTimeOut is 1-1800 s and at most the timeout), memory steps, timeouts, runtimes, the
Description's characters, non-empty environment values, reserved variable names and their
4 KB, 7-field crons, a function that refuses changes until Active, a COS object that must
exist where `Code` names it (looked up in the moto-served COS, the bucket given without its
`-<appid>` as SCF takes it). What the fake assumes beyond the documents: a custom domain's
path may only point at a function that has a Function URL on that qualifier, and a Function
URL a domain's path points at cannot be deleted (tests/fakes/scf_routing.py).

A function's Status, as SCF's status table has it (infra/deploy/status.py names the
sources): each write (create, update, delete) is Creating, Updating or Deleting until it
ends, Active (or gone, for a delete), or CreateFailed, UpdateFailed or DeleteFailed with
`StatusReasons` [{ErrorCode, ErrorMessage}] and a `StatusDesc`. What each state accepts:
updates (and Invoke) in Active, UpdateFailed and PublishFailed (a failed update leaves the
function running what it ran before, and Tencent's deploy tool updates it again), refused in
CreateFailed (that tool deletes such a function, "a function whose creation failed cannot be
updated") and while a write is under way, with the codes SCF answers
(FailedOperation.UpdateFunctionCode, .UpdateFunctionConfiguration); DeleteFunction in any
state but a write under way (the table: a CreateFailed function "can be deleted and created
again"), refused with FailedOperation.DeleteFunction; everything else only when Active
(FailedOperation.FunctionStatusError). GetFunction of a failed update shows what that
update asked for: what SCF shows is not documented, and this is the case a comparison alone
would take for done.

`scf.run_with(name, fn)` makes a RequestResponse Invoke of function `name` call
`fn(event, context, environment)` (the function's deployed environment), and answer what it
returns, or its exception as the function's error. `scf.writes()` lists every call that
changed something; `scf.fail_next(action, code)` refuses the next call of `action`;
`scf.fail_next_change(name, code, message)` accepts the next write of function or layer
`name` and ends it failed, with that reason; `scf.publish_elsewhere(layer, description)`
adds an Active version as an earlier deploy left it; `scf.leave(name, status, code, message)` puts a
function in a status as a write from elsewhere left it.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import secrets
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import requests

from tests.fakes import api_schema
from tests.fakes.scf_concurrency import ConcurrencyActions
from tests.fakes.scf_namespaces import DEFAULT, Key, NamespaceActions, key_of
from tests.fakes.scf_routing import RoutingActions
from tests.fakes.tencentcloud import Call, FakeTencentCloud, TencentCloudError

SCHEMA = api_schema.load("scf", "v20180416")
WRITES = ("Create", "Update", "Publish", "Delete", "Put", "Copy", "Terminate")
RUNTIMES = {"Python2.7", "Python3.6", "Python3.7", "Python3.9", "Python3.10", "Nodejs16.13"}
DEFAULT_ASYNC = {"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600}
_DESCRIPTION = re.compile(r"^[A-Za-z0-9 ,.\n\u4e00-\u9fff]*$")
# The API's FunctionName: letters, digits, - and _, starting with a letter, 2-60 long.
_FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,59}$")
_LAYER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}[A-Za-z0-9]$")
_UPDATABLE = ("Active", "UpdateFailed", "PublishFailed")
_DELETABLE = ("Active", "CreateFailed", "UpdateFailed", "PublishFailed", "DeleteFailed")
# How each write of a function ends when it fails, and SCF's description of that state.
_FAILED = {"Creating": "CreateFailed", "Updating": "UpdateFailed", "Deleting": "DeleteFailed"}
_FAILED_DESC = {
    "CreateFailed": "creation failed",
    "UpdateFailed": "update failed; invocations run the function as it was before it",
    "DeleteFailed": "deletion failed",
}
Runner = Callable[[Any, dict[str, Any], dict[str, str]], Any]


def _error(code: str, message: str) -> TencentCloudError:
    return TencentCloudError(code, message)


def _public(state: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it: without the fake's own `_` keys."""
    return {k: v for k, v in state.items() if not k.startswith("_")}


def _child(node: ElementTree.Element, tag: str) -> str | None:
    return next((c.text for c in node if c.tag.endswith(tag)), None)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class FakeScf(NamespaceActions, RoutingActions, ConcurrencyActions):
    def __init__(
        self,
        cloud: FakeTencentCloud,
        *,
        appid: str = "1250000000",
        cos_endpoint: str | None = None,
        settle_s: float = 0.2,
    ) -> None:
        self.cloud, self.appid = cloud, appid
        self.cos_endpoint, self.settle_s = cos_endpoint, settle_s
        # Functions, their triggers and async configs by (namespace, name): a name is unique
        # within its namespace only.
        self.functions: dict[Key, dict[str, Any]] = {}
        self.triggers: dict[Key, list[dict[str, Any]]] = {}
        self.async_configs: dict[Key, dict[str, Any]] = {}
        self.reserved: dict[Key, int] = {}  # reserved concurrency, MB
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.add_namespace(DEFAULT, kind="default")
        self.layers: dict[str, list[dict[str, Any]]] = {}
        self._last_layer_version: dict[str, int] = {}  # a deleted version's number is not reused
        self.domains: dict[str, dict[str, Any]] = {}
        self.runners: dict[str, Runner] = {}
        self._failures: dict[str, TencentCloudError] = {}
        self._change_failures: dict[str, dict[str, str]] = {}
        self._before: dict[str, tuple[int, Callable[[], None]]] = {}
        # A deletion is asynchronous: for this long after DeleteFunction, GetFunction still
        # shows the state it was deleted from.
        self.deletion_shows_late_s = 0.0
        self._lock = threading.RLock()
        cloud.validate_with("scf", SCHEMA.validate)
        for action in SCHEMA.actions:
            handler = getattr(self, f"_{action}", None)
            if handler is not None:
                cloud.on(action, self._guarded(action, handler))

    # ------------------------------------------------------------ for tests

    def run_with(self, name: str, runner: Runner) -> None:
        self.runners[name] = runner

    def fail_next(self, action: str, code: str, message: str = "refused") -> None:
        self._failures[action] = _error(code, message)

    def fail_next_change(self, name: str, code: str, message: str) -> None:
        self._change_failures[name] = {"ErrorCode": code, "ErrorMessage": message}

    def before_call(self, action: str, effect: Callable[[], None], *, skip: int = 0) -> None:
        """Run `effect` (someone else changing the account) just before the call of `action`
        that follows `skip` more of them, once."""
        self._before[action] = (skip, effect)

    def leave(self, name: str, status: str, code: str = "", message: str = "") -> None:
        with self._lock:
            reasons = [{"ErrorCode": code, "ErrorMessage": message}] if code else []
            desc = _FAILED_DESC.get(status, "")
            (key,) = [key for key in self.functions if key[1] == name]
            self.functions[key].update(
                Status=status, StatusReasons=reasons, StatusDesc=desc, _ready_at=float("inf")
            )

    def publish_elsewhere(self, layer: str, description: str) -> int:
        """A version of `layer` published by someone else (an earlier deploy), Active; its
        number."""
        with self._lock:
            versions = self.layers.setdefault(layer, [])
            number = self._last_layer_version[layer] = self._last_layer_version.get(layer, 0) + 1
            versions.append(
                {
                    "LayerName": layer,
                    "LayerVersion": number,
                    "CompatibleRuntimes": ["Python3.10"],
                    "Description": description,
                    "LicenseInfo": "",
                    "AddTime": _now(),
                    "Status": "Active",
                    "Stamp": "default",
                }
            )
            return number

    def calls(self) -> list[Call]:
        return [c for c in self.cloud.calls if c.service == "scf"]

    def writes(self) -> list[Call]:
        return [c for c in self.calls() if c.action.startswith(WRITES)]

    def _guarded(
        self, action: str, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[[dict[str, Any], Call], dict[str, Any]]:
        def answer(params: dict[str, Any], _call: Call) -> dict[str, Any]:
            if action in self._before:
                skip, effect = self._before.pop(action)
                if skip:
                    self._before[action] = (skip - 1, effect)
                else:
                    effect()
            failure = self._failures.pop(action, None)
            if failure is not None:
                raise failure
            with self._lock:
                return handler(params)

        return answer

    # ------------------------------------------------------------ functions

    def _function(
        self,
        params: dict[str, Any],
        *,
        active: bool = False,
        accept: tuple[str, ...] | None = None,
        refusal: str = "FailedOperation.FunctionStatusError",
    ) -> dict[str, Any]:
        """The function, refused with `refusal` unless its Status is one `accept` lists
        (only Active when `active`)."""
        fn = self._settled((self.namespace_of(params), params["FunctionName"]))
        if fn is None:
            raise _error("ResourceNotFound.Function", f"function {params['FunctionName']}")
        accept = ("Active",) if active else accept
        if accept is not None and fn["Status"] not in accept:
            raise _error(refusal, f"function is {fn['Status']}: this operation is not possible")
        return fn

    def _settled(self, key: Key) -> dict[str, Any] | None:
        """The function once its write under way has ended, if it is due to; None if none."""
        fn = self.functions.get(key)
        if fn is None or fn["Status"] not in _FAILED or time.monotonic() < fn["_ready_at"]:
            return fn
        reason = fn.pop("_failure", None)
        if reason is not None:
            failed = _FAILED[fn["Status"]]
            fn.update(Status=failed, StatusReasons=[reason], StatusDesc=_FAILED_DESC[failed])
        elif fn["Status"] == "Deleting":
            del self.functions[key], self.triggers[key]
            self.async_configs.pop(key, None)
            self.reserved.pop(key, None)
            return None
        else:
            fn.update(Status="Active", StatusReasons=[], StatusDesc="")
        return fn

    def _busy(self, fn: dict[str, Any], status: str) -> None:
        fn.update(Status=status, ModTime=_now(), _ready_at=time.monotonic() + self.settle_s)
        reason = self._change_failures.pop(fn["FunctionName"], None)
        if reason is not None:
            fn["_failure"] = reason

    def _code(self, code: dict[str, Any]) -> int:
        """The code's size, once its zip or COS object is found."""
        if code.get("ZipFile"):
            try:
                data = base64.b64decode(code["ZipFile"], validate=True)
            except binascii.Error as error:
                raise _error("InvalidParameterValue.ZipFile", "not base64") from error
            if not zipfile.is_zipfile(io.BytesIO(data)):
                raise _error("InvalidParameterValue.ZipFile", "not a zip file")
            return len(data)
        bucket, key = code.get("CosBucketName"), code.get("CosObjectName") or ""
        if not bucket or not key.startswith("/"):
            raise _error("InvalidParameterValue.Code", "give ZipFile, or CosBucketName and /key")
        if re.search(r"-\d{6,}$", bucket):
            raise _error("InvalidParameterValue.CosBucketName", "the bucket without -appid")
        if self.cos_endpoint is None:
            return 0
        # moto refuses an anonymous HEAD of a private object, but lists the bucket.
        url = f"http://{self.cos_endpoint}/{bucket}-{self.appid}"
        listing = requests.get(url, params={"prefix": key[1:]}, timeout=10)
        for entry in ElementTree.fromstring(listing.content).iter():
            if entry.tag.endswith("Contents") and _child(entry, "Key") == key[1:]:
                return int(_child(entry, "Size") or 0)
        raise _error("ResourceNotFound.CosObject", f"{bucket}{key} ({listing.status_code})")

    def _configure(self, fn: dict[str, Any], params: dict[str, Any]) -> None:
        if "Description" in params and not _DESCRIPTION.match(params["Description"]):
            raise _error("InvalidParameterValue.Description", params["Description"])
        memory = params.get("MemorySize", fn.get("MemorySize", 128))
        if memory != 64 and not (128 <= memory <= 3072 and memory % 128 == 0):
            raise _error("InvalidParameterValue.MemorySize", str(memory))
        if not 1 <= params.get("Timeout", fn.get("Timeout", 3)) <= 900:
            raise _error("InvalidParameterValue.Timeout", str(params["Timeout"]))
        variables = (params.get("Environment") or {}).get("Variables") or []
        for variable in variables:
            key, value = variable.get("Key") or "", variable.get("Value") or ""
            if not key or not value or key.startswith(("TENCENTCLOUD_", "QCLOUD_", "SCF_")):
                raise _error("InvalidParameterValue.Environment", f"variable {key!r}")
        if sum(len(v["Key"]) + len(v["Value"]) for v in variables) > 4096:
            raise _error("InvalidParameterValue.Environment", "over 4 KB")
        if "ProtocolParams" in params:
            if fn.get("ProtocolType") != "WS":
                raise _error("InvalidParameter.ProtocolParams", "only for a WebSocket function")
            idle = (params["ProtocolParams"].get("WSParams") or {}).get("IdleTimeOut")
            timeout = params.get("Timeout", fn.get("Timeout", 3))
            if not isinstance(idle, int) or not 1 <= idle <= 1800 or idle > timeout:
                raise _error("InvalidParameterValue.IdleTimeOut", f"{idle} (timeout {timeout})")
        layers = []
        for ref in params.get("Layers") or []:
            version = self._layer_version(ref["LayerName"], ref["LayerVersion"])
            if version["Status"] != "Active":
                raise _error("InvalidParameterValue.Layers", f"layer is {version['Status']}")
            layers.append(_public(version))
        if "Layers" in params:
            fn["Layers"] = layers
        keys = ("Description", "MemorySize", "Timeout", "Environment", "VpcConfig", "Role")
        for key in (*keys, "ProtocolParams"):
            if key in params:
                fn[key] = params[key]

    def _CreateFunction(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["FunctionName"]
        if not _FUNCTION_NAME.match(name):
            raise _error("InvalidParameterValue.FunctionName", name)
        namespace = self.namespace_of(params)
        if self._settled((namespace, name)) is not None:
            raise _error("ResourceInUse.FunctionName", name)
        self.check_room(namespace)
        if params.get("Runtime", "Python2.7") not in RUNTIMES:
            raise _error("InvalidParameterValue.Runtime", params["Runtime"])
        kind = params.get("Type", "Event")
        if kind not in ("Event", "HTTP"):
            raise _error("InvalidParameterValue.Type", kind)
        # A web function runs its scf_bootstrap; an event function needs its handler.
        if kind == "Event" and not params.get("Handler"):
            raise _error("InvalidParameterValue.Handler", "a handler is required")
        protocol = params.get("ProtocolType")
        if protocol is not None and (kind != "HTTP" or protocol != "WS"):
            raise _error("InvalidParameterValue.ProtocolType", f"{protocol} on {kind}")
        fn: dict[str, Any] = {
            "FunctionName": name,
            "Namespace": namespace,
            "Runtime": params.get("Runtime", "Python2.7"),
            "Handler": params.get("Handler", ""),
            "Type": kind,
            "MemorySize": 128,
            "Timeout": 3,
            "Description": "",
            "Environment": {"Variables": []},
            "VpcConfig": {"VpcId": "", "SubnetId": ""},
            "Role": "",
            "Layers": [],
            "AddTime": _now(),
            "StatusDesc": "",
            "StatusReasons": [],
        }
        if protocol is not None:
            fn["ProtocolType"] = protocol
            fn["ProtocolParams"] = {"WSParams": {"IdleTimeOut": 15}}  # the API's default
        fn["CodeSize"] = self._code(params["Code"])
        self._configure(fn, params)
        self._busy(fn, "Creating")
        self.functions[namespace, name] = fn
        self.triggers[namespace, name] = []
        return {}

    def _GetFunction(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params)
        triggers = self.triggers[key_of(fn)]
        latest = {"Qualifier": "$LATEST", "FunctionVersion": "$LATEST"}
        shown, until = fn.get("_shown", ("", 0.0))
        late = {"Status": shown} if time.monotonic() < until else {}
        return {**_public(fn), **latest, "Triggers": triggers, **late}

    def _UpdateFunctionCode(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, accept=_UPDATABLE, refusal="FailedOperation.UpdateFunctionCode")
        code = params.get("Code") or {
            k: params[k] for k in ("ZipFile", "CosBucketName", "CosObjectName") if k in params
        }
        fn["CodeSize"] = self._code(code)
        fn["Handler"] = params.get("Handler", fn["Handler"])
        self._busy(fn, "Updating")
        return {}

    def _UpdateFunctionConfiguration(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(
            params, accept=_UPDATABLE, refusal="FailedOperation.UpdateFunctionConfiguration"
        )
        if params.get("Runtime", fn["Runtime"]) != fn["Runtime"]:
            raise _error("InvalidParameterValue.Runtime", "the runtime is set at creation")
        self._configure(fn, params)
        self._busy(fn, "Updating")
        return {}

    def _DeleteFunction(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Qualifier", "$LATEST") != "$LATEST":
            raise _error("InvalidParameterValue.Qualifier", "the fake keeps no versions")
        fn = self._function(params, accept=_DELETABLE, refusal="FailedOperation.DeleteFunction")
        was = fn["Status"]
        self._busy(fn, "Deleting")
        if self.deletion_shows_late_s:
            fn["_shown"] = (was, time.monotonic() + self.deletion_shows_late_s)
        return {}

    def _GetFunctionEventInvokeConfig(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params)
        return {"AsyncTriggerConfig": self.async_configs.get(key_of(fn), DEFAULT_ASYNC)}

    def _UpdateFunctionEventInvokeConfig(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        config = params["AsyncTriggerConfig"]
        retries = [r["RetryNum"] for r in config["RetryConfig"]]
        if not retries or min(retries) < 0 or not 60 <= config["MsgTTL"] <= 21600:
            raise _error("InvalidParameterValue.AsyncTriggerConfig", json.dumps(config))
        self.async_configs[key_of(fn)] = config
        return {}

    def _Invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, accept=_UPDATABLE)
        request_id = secrets.token_hex(16)
        if params.get("InvocationType", "RequestResponse") == "Event":
            return {"Result": {"FunctionRequestId": request_id}}
        runner = self.runners.get(fn["FunctionName"])
        environment = {v["Key"]: v["Value"] for v in fn["Environment"]["Variables"]}
        event = json.loads(params.get("ClientContext") or "{}")
        context = {"request_id": request_id, "function_name": fn["FunctionName"]}
        result = {"FunctionRequestId": request_id, "Log": "", "Duration": 1.0, "MemUsage": 0}
        try:
            answer = runner(event, context, environment) if runner else None
        except Exception as error:
            return {"Result": {**result, "RetMsg": "", "ErrMsg": str(error), "InvokeResult": -1}}
        return {"Result": {**result, "RetMsg": json.dumps(answer), "ErrMsg": "", "InvokeResult": 0}}

    # ------------------------------------------------------------ layers

    def _layer_version(self, name: str, number: int) -> dict[str, Any]:
        for version in self.layers.get(name, []):
            if version["LayerVersion"] == number:
                if version["Status"] == "Publishing" and time.monotonic() >= version["_ready_at"]:
                    failed = version.pop("_failure", None) is not None
                    version["Status"] = "PublishFailed" if failed else "Active"
                return version
        raise _error("ResourceNotFound.LayerVersion", f"{name} version {number}")

    def _PublishLayerVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["LayerName"]
        if not _LAYER_NAME.match(name):
            raise _error("InvalidParameterValue.LayerName", name)
        unknown = set(params["CompatibleRuntimes"]) - RUNTIMES
        if not params["CompatibleRuntimes"] or unknown:
            raise _error("InvalidParameterValue.CompatibleRuntimes", str(sorted(unknown)))
        self._code(params["Content"])
        versions = self.layers.setdefault(name, [])
        number = self._last_layer_version[name] = self._last_layer_version.get(name, 0) + 1
        version = {
            "LayerName": name,
            "LayerVersion": number,
            "CompatibleRuntimes": params["CompatibleRuntimes"],
            "Description": params.get("Description", ""),
            "LicenseInfo": "",
            "AddTime": _now(),
            "Status": "Publishing",
            "Stamp": "default",
            "_ready_at": time.monotonic() + self.settle_s,
        }
        reason = self._change_failures.pop(name, None)
        if reason is not None:
            version["_failure"] = reason  # GetLayerVersion has no field for it
        versions.append(version)
        return {"LayerVersion": version["LayerVersion"]}

    def _ListLayerVersions(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["LayerName"] not in self.layers:
            raise _error("ResourceNotFound.Layer", params["LayerName"])
        versions = [
            self._layer_version(params["LayerName"], v["LayerVersion"])
            for v in self.layers[params["LayerName"]]
        ]
        return {"LayerVersions": [_public(version) for version in versions][::-1]}

    def _GetLayerVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        return _public(self._layer_version(params["LayerName"], params["LayerVersion"]))

    def _DeleteLayerVersion(self, params: dict[str, Any]) -> dict[str, Any]:
        """Gone at once; a function that names it keeps it, but none can be given it again
        (https://cloud.tencent.com/document/api/583/41387). Refusing a version still being
        published is the fake's assumption."""
        name = params["LayerName"]
        version = self._layer_version(name, params["LayerVersion"])
        if version["Status"] == "Publishing":
            raise _error("FailedOperation.DeleteLayerVersion", "the version is Publishing")
        self.layers[name].remove(version)
        return {}
