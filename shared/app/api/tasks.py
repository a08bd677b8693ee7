"""Task routes: start a pipeline run, read and list one's own runs, cancel one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.http import Auth, Request, Response, Router
from app.http.models import Page, PageQuery
from app.tasks import service

router = Router(tags=("tasks",))

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class TaskIn(BaseModel):
    pipeline_id: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)


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
    steps: list[StepOut]
    created_at: str
    updated_at: str
    finished_at: str | None = None


class TaskListQuery(PageQuery):
    status: TaskStatus | None = None


def _out(view: dict[str, Any]) -> dict[str, Any]:
    return TaskOut.model_validate(view).model_dump(mode="json")


@router.post(
    "/tasks",
    auth=Auth.USER,
    body=TaskIn,
    response=TaskOut,
    status=201,
    errors=(402, 404, 409, 422),
    summary="Start a pipeline run (Idempotency-Key header optional)",
)
def create_task(req: Request[TaskIn, None]) -> Response:
    status, body = service.create(
        req.user.user_id,
        req.body.pipeline_id,
        req.body.input,
        req.headers.get("idempotency-key"),
    )
    req.extra_log["task_id"] = body.get("id")
    return Response.json(_out(body) if status == 201 else body, status)


@router.get(
    "/tasks",
    auth=Auth.USER,
    query=TaskListQuery,
    response=Page[TaskOut],
    summary="List one's own tasks, newest first",
)
def list_tasks(req: Request[None, TaskListQuery]) -> dict[str, Any]:
    q = req.query
    page = service.list_for(req.user.user_id, q.status, q.limit, q.cursor)
    return {"items": [_out(v) for v in page["items"]], "next_cursor": page["next_cursor"]}


@router.get(
    "/tasks/{id}",
    auth=Auth.USER,
    response=TaskOut,
    errors=(404,),
    summary="One of one's own tasks, with its steps and branches",
)
def get_task(req: Request[None, None]) -> dict[str, Any]:
    return _out(service.get(req.user.user_id, req.path_params["id"]))


@router.post(
    "/tasks/{id}/cancel",
    auth=Auth.USER,
    response=TaskOut,
    errors=(404, 409),
    summary="Cancel a task and refund its quota",
)
def cancel_task(req: Request[None, None]) -> dict[str, Any]:
    return _out(service.cancel(req.user.user_id, req.path_params["id"]))
