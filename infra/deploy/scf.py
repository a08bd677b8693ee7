"""The SCF API as the deployer calls it: `tencentcloud-sdk-python-scf`'s client, requests as
plain dicts (`call_json`), checked against the official schema by the tests' fake.

Plain dicts rather than the SDK's request models: a model silently drops an attribute it
does not know (a misspelt one, or one newer than SDK 3.1.100), so the request that reaches
the API is not the one written; a dict is sent as written, and the fake refuses what the
schema does not declare, as the API would.

Reads (`read`) and writes (`write`) are separate calls so that a plan can be seen to write
nothing. Errors become ApiError (action, code, message). A function is usable only when its
Status is Active (`CreateFunction` and the updates are asynchronous: Creating or Updating
first), a layer version only when Active: `wait_function` and `wait_layer` poll for it,
bounded by WAIT_S, and a failed state (infra.deploy.status) is an ApiError naming the
resource, its state, SCF's reason and what the next deploy does with it. `DeleteFunction`
is asynchronous too: `wait_deleted` polls until SCF no longer knows the function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.scf.v20180416.scf_client import ScfClient

from app import cloud_clients
from infra.deploy import status
from infra.deploy.settings import Settings

WAIT_S = 300.0
POLL_S = 1.0
REQUEST_TIMEOUT_S = 60
# A synchronous Invoke may run for the function's whole timeout (db-migrate: 300 s).
INVOKE_TIMEOUT_S = 330
PAGE = 100
_A = TypeVar("_A")  # what a poll reads: a GetFunction or GetLayerVersion answer
# Not found, as SCF says it: `ResourceNotFound.Function`, `.Layer`, ... and the custom
# domain's own code (tencentcloud.scf.v20180416.errorcodes).
_ABSENT_CODES = ("FailedOperation.Domain.UnExist",)


class ApiError(RuntimeError):
    def __init__(self, action: str, code: str, message: str) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action, self.code, self.message = action, code, message

    @property
    def absent(self) -> bool:
        return self.code.startswith("ResourceNotFound") or self.code in _ABSENT_CODES


class ScfApi:
    def __init__(self, settings: Settings, namespace: str) -> None:
        self.namespace = namespace
        self._settings = settings
        self._clients: dict[int, ScfClient] = {}

    @property
    def region(self) -> str:
        return self._settings.region

    def _client(self, timeout_s: int) -> ScfClient:
        if timeout_s not in self._clients:
            access = cloud_clients.CloudAccess(
                secret_id=self._settings.secret_id,
                secret_key=self._settings.secret_key,
                session_token=self._settings.session_token or "",
                region=self._settings.region,
                endpoint=self._settings.api_endpoint or "",
            )
            self._clients[timeout_s] = cloud_clients.build(ScfClient, access, timeout_s)
        return self._clients[timeout_s]

    def _call(self, action: str, params: dict[str, Any], timeout_s: int) -> dict[str, Any]:
        try:
            answer = self._client(timeout_s).call_json(action, params)
        except TencentCloudSDKException as error:
            raise ApiError(action, error.get_code() or "", error.get_message() or "") from error
        return dict(answer["Response"])

    def read(self, action: str, **params: Any) -> dict[str, Any]:
        assert action.startswith(("Get", "List")), action
        return self._call(action, params, REQUEST_TIMEOUT_S)

    def write(self, action: str, **params: Any) -> dict[str, Any]:
        assert not action.startswith(("Get", "List")), action
        timeout = INVOKE_TIMEOUT_S if action == "Invoke" else REQUEST_TIMEOUT_S
        return self._call(action, params, timeout)

    def read_or_none(self, action: str, **params: Any) -> dict[str, Any] | None:
        """The answer, or None when SCF says there is no such resource."""
        try:
            return self.read(action, **params)
        except ApiError as error:
            if error.absent:
                return None
            raise

    # ------------------------------------------------------------ reads

    def function(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """GetFunction's answer for the function of this stage's namespace (or of
        `namespace`), None when there is no such function."""
        where = namespace or self.namespace
        return self.read_or_none("GetFunction", FunctionName=name, Namespace=where)

    def triggers(self, name: str) -> list[dict[str, Any]]:
        return list(
            self._pages("ListTriggers", "Triggers", FunctionName=name, Namespace=self.namespace)
        )

    def namespaces(self) -> list[str]:
        return [ns["Name"] for ns in self._pages("ListNamespaces", "Namespaces")]

    def functions_in(self, namespace: str, search: str = "") -> list[str]:
        """The names of the functions of `namespace` whose name holds `search` (all of them
        when it is empty)."""
        keyword = {"SearchKey": search} if search else {}
        found = self._pages("ListFunctions", "Functions", Namespace=namespace, **keyword)
        return [fn["FunctionName"] for fn in found]

    def layer_versions(self, layer: str) -> list[dict[str, Any]]:
        answer = self.read_or_none("ListLayerVersions", LayerName=layer)
        return list((answer or {}).get("LayerVersions") or [])

    def _pages(self, action: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            answer = self.read(action, Offset=offset, Limit=PAGE, **params)
            items = answer.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(answer.get("TotalCount") or 0):
                return

    # ------------------------------------------------------------ waits

    def wait_function(self, name: str) -> None:
        """Until the function is Active; ApiError when a write of it failed, or the wait ran
        out."""
        answer = self.settle_function(name)
        if answer is None:
            raise ApiError("GetFunction", "ResourceNotFound.Function", f"function {name} is gone")
        if answer.get("Status") != status.ACTIVE:
            raise self._function_failed(name, answer)

    def settle_function(self, name: str) -> dict[str, Any] | None:
        """GetFunction's answer once no write of the function is under way (Active, or a
        failed state), None when there is no such function."""
        return self._poll(
            "GetFunction",
            lambda: self.function(name),
            lambda answer: answer is None or answer.get("Status") not in status.TRANSITIONS,
            f"function {name}",
        )

    def wait_deleted(self, name: str) -> None:
        """Until SCF no longer knows the function; ApiError when its deletion failed. The
        deletion is asynchronous: until it begins, GetFunction may still show the state the
        function was deleted from (CreateFailed), which is waited out like Deleting."""
        answer = self._poll(
            "GetFunction",
            lambda: self.function(name),
            lambda answer: answer is None or answer.get("Status") == "DeleteFailed",
            f"function {name}",
        )
        if answer is not None:
            raise self._function_failed(name, answer)

    def wait_layer(self, layer: str, version: int) -> None:
        what = f"layer {layer} version {version}"
        answer = self._poll(
            "GetLayerVersion",
            lambda: self.read("GetLayerVersion", LayerName=layer, LayerVersion=version),
            lambda answer: answer.get("Status") != "Publishing",
            what,
        )
        state = status.Status.of(answer)
        if state.value != status.ACTIVE:
            advice = status.layer_advice(state.value)
            raise ApiError("GetLayerVersion", state.value, f"{what} is {state.render()}: {advice}")

    def _function_failed(self, name: str, answer: dict[str, Any]) -> ApiError:
        state = status.Status.of(answer)
        advice = status.function_advice(self.namespace, name, state.value)
        return ApiError(
            "GetFunction", state.value, f"function {name} is {state.render()}: {advice}"
        )

    @staticmethod
    def _poll(action: str, get: Callable[[], _A], done: Callable[[_A], bool], what: str) -> _A:
        """`get()`'s first answer that is `done`; ApiError Timeout after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            answer = get()
            if done(answer):
                return answer
            if time.monotonic() > deadline:
                now = answer.get("Status") if isinstance(answer, dict) else None
                raise ApiError(action, "Timeout", f"{what} still {now} after {WAIT_S:.0f} s")
            time.sleep(POLL_S)
