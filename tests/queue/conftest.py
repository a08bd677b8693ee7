"""The fake Tencent Cloud endpoint answering SCF's `Invoke` for the `scf` queue backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.tencentcloud import Call, FakeTencentCloud, TencentCloudError
from tests.support.settings import settings_env


@pytest.fixture
def cloud(clean_redis: Any) -> Iterator[FakeTencentCloud]:
    state: dict[str, Any] = {"refuse": None}

    def invoke(params: dict[str, Any], _call: Call) -> dict[str, Any]:
        if params["FunctionName"] == "missing":
            raise TencentCloudError("ResourceNotFound.Function", "no such function")
        if state["refuse"]:
            code = state["refuse"].pop(0)
            if not state["refuse"]:
                state["refuse"] = None
            raise TencentCloudError(code, "refused")
        return {"Result": {"FunctionRequestId": f"req-{len(fake.calls)}"}}

    with FakeTencentCloud() as fake:
        fake.on("Invoke", invoke)
        fake.state = state  # type: ignore[attr-defined]
        with settings_env(QUEUE_BACKEND="scf", SCF_NAMESPACE="prod", **fake.env()):
            yield fake
