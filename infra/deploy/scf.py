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
bounded by WAIT_S.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.scf.v20180416.scf_client import ScfClient

from app import cloud_clients
from infra.deploy.settings import Settings

WAIT_S = 300.0
POLL_S = 1.0
REQUEST_TIMEOUT_S = 60
# A synchronous Invoke may run for the function's whole timeout (db-migrate: 300 s).
INVOKE_TIMEOUT_S = 330
PAGE = 100
# Not found, as SCF says it: `ResourceNotFound.Function`, `.Layer`, ... and the custom
# domain's own code (tencentcloud.scf.v20180416.errorcodes).
_ABSENT_CODES = ("FailedOperation.Domain.UnExist",)
_FAILED_STATES = ("CreateFailed", "UpdateFailed", "PublishFailed", "DeleteFailed")


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

    def function(self, name: str) -> dict[str, Any] | None:
        return self.read_or_none("GetFunction", FunctionName=name, Namespace=self.namespace)

    def triggers(self, name: str) -> list[dict[str, Any]]:
        return list(self._pages("ListTriggers", "Triggers", FunctionName=name))

    def layer_versions(self, layer: str) -> list[dict[str, Any]]:
        answer = self.read_or_none("ListLayerVersions", LayerName=layer)
        return list((answer or {}).get("LayerVersions") or [])

    def _pages(self, action: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            answer = self.read(
                action, Namespace=self.namespace, Offset=offset, Limit=PAGE, **params
            )
            items = answer.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(answer.get("TotalCount") or 0):
                return

    # ------------------------------------------------------------ waits

    def wait_function(self, name: str) -> None:
        """Until the function is Active; ApiError when it failed or the wait ran out."""
        self._wait(
            "GetFunction",
            lambda: self.read("GetFunction", FunctionName=name, Namespace=self.namespace),
            name,
        )

    def wait_layer(self, layer: str, version: int) -> None:
        self._wait(
            "GetLayerVersion",
            lambda: self.read("GetLayerVersion", LayerName=layer, LayerVersion=version),
            f"{layer} version {version}",
        )

    @staticmethod
    def _wait(action: str, get: Callable[[], dict[str, Any]], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            answer = get()
            status = str(answer.get("Status") or "")
            if status == "Active":
                return
            if status in _FAILED_STATES:
                reasons = answer.get("StatusReasons") or []
                detail = "; ".join(
                    f"{r.get('ErrorCode')}: {r.get('ErrorMessage')}" for r in reasons
                )
                raise ApiError(action, status, f"{what}: {detail or answer.get('StatusDesc')}")
            if time.monotonic() > deadline:
                raise ApiError(action, "Timeout", f"{what} still {status} after {WAIT_S:.0f} s")
            time.sleep(POLL_S)
