"""The shapes of the task resource (API.md `Task`, `Step`): what a client sends to start a
pipeline run and what it reads back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app import json_values
from app.http.models import PageQuery


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    try:
        json_values.check(value, max_bytes=json_values.TASK_INPUT_MAX_BYTES)
    except json_values.Refused as refused:
        raise ValueError(str(refused)) from None
    return value


TaskInput = Annotated[dict[str, Any], AfterValidator(_storable)]

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # `input` itself is free-form

    pipeline_id: str = Field(min_length=1, max_length=64)
    input: TaskInput = Field(default_factory=dict)


class TaskError(BaseModel):
    code: str
    message: str


class BranchOut(BaseModel):
    index: int
    status: StepStatus
    output: Any = None
    error: TaskError | None = None


class StepOut(BaseModel):
    id: str
    type: Literal["http", "fork", "sim"]
    status: StepStatus
    output: Any = None
    error: TaskError | None = None
    branches: list[BranchOut] | None = None


class TaskOut(BaseModel):
    id: str
    pipeline_id: str
    status: TaskStatus
    cost: int
    input: dict[str, Any]
    output: Any = None
    error: TaskError | None = None
    steps: list[StepOut] | None  # null in list items: GET /tasks/{id} has them
    created_at: str
    updated_at: str
    finished_at: str | None = None


class TaskListQuery(PageQuery):
    status: TaskStatus | None = None
