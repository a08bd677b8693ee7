"""The fake SCF's reserved concurrency ("最大独占配额": the memory, in MB, of the instances a
function may run at once, held for it alone), as tests/fakes/scf.py's FakeScf serves it.

What the API documents (tccli's api.json, scf 2018-04-16): PutReservedConcurrencyConfig
{FunctionName, ReservedConcurrencyMem, Namespace}, GetReservedConcurrencyConfig
{FunctionName, Namespace} answering {ReservedMem} (which "may be null": a function with
none), DeleteReservedConcurrencyConfig {FunctionName, Namespace}; the reserved memory of all
functions together may not pass the account's concurrency quota less 12800 MB (the
ReservedConcurrencyMem member's note), refused as FailedOperation.ReservedExceedTotal
(tencentcloud-sdk-python-scf's errorcodes.py: "总保留超限"). The region's quota is
DEPLOY-NOTES section 5's: 128000 MB in ap-guangzhou, the fake's region. What the fake
assumes beyond the documents: a function SCF does not know is ResourceNotFound.Function for
all three, a write while the function is not Active is FailedOperation.FunctionStatusError
(as for its other configuration), and a deleted function's reservation goes with it.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.scf_namespaces import Key, key_of
from tests.fakes.tencentcloud import TencentCloudError

QUOTA_MB = 128000
UNRESERVED_MB = 12800


class ConcurrencyActions:
    """Mixed into FakeScf: needs its `_function`; keeps `reserved`, MB by function."""

    reserved: dict[Key, int]
    functions: dict[Key, dict[str, Any]]
    concurrency_quota_mb = QUOTA_MB

    def _function(self, params: dict[str, Any], *, active: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def _PutReservedConcurrencyConfig(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        memory = params["ReservedConcurrencyMem"]
        if memory <= 0:
            raise TencentCloudError("InvalidParameterValue.ReservedConcurrencyMem", str(memory))
        others = sum(mb for key, mb in self.reserved.items() if key != key_of(fn))
        most = self.concurrency_quota_mb - UNRESERVED_MB
        if others + memory > most:
            raise TencentCloudError(
                "FailedOperation.ReservedExceedTotal",
                f"{others + memory} MB reserved in all, over {most} MB",
            )
        self.reserved[key_of(fn)] = memory
        return {}

    def _GetReservedConcurrencyConfig(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params)
        return {"ReservedMem": self.reserved.get(key_of(fn))}

    def _DeleteReservedConcurrencyConfig(self, params: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(params, active=True)
        self.reserved.pop(key_of(fn), None)
        return {}
