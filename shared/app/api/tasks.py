"""Task routes: start a pipeline run, read and list one's own runs, cancel one."""

from __future__ import annotations

from typing import Any

from app.api.schemas.tasks import TaskIn, TaskListQuery, TaskOut
from app.http import Auth, Request, Router
from app.http.models import Page
from app.tasks import service

router = Router(tags=("tasks",))
IDEMPOTENCY_KEY_MAX = 255  # idempotency_keys.key is 255 characters


def _out(view: dict[str, Any]) -> TaskOut:
    return TaskOut.model_validate(view)


@router.post(
    "/tasks",
    auth=Auth.USER,
    body=TaskIn,
    response=TaskOut,
    status=201,
    errors=(402, 404, 409, 422, 429),
    idempotency_key=IDEMPOTENCY_KEY_MAX,
    summary="Start a pipeline run (Idempotency-Key header optional)",
)
def create_task(req: Request[TaskIn, None]) -> TaskOut:
    key = req.idempotency_key(max_length=IDEMPOTENCY_KEY_MAX)
    created = service.create(req.user.user_id, req.body.pipeline_id, req.body.input, key)
    req.extra_log.update(task_id=created.task["id"], replayed=created.replayed)
    return _out(created.task)


@router.get(
    "/tasks",
    auth=Auth.USER,
    query=TaskListQuery,
    response=Page[TaskOut],
    summary="List one's own tasks, newest first",
)
def list_tasks(req: Request[None, TaskListQuery]) -> Page[TaskOut]:
    q = req.query
    page = service.list_for(req.user.user_id, q.status, q.limit, q.cursor)
    return Page[TaskOut](items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.get(
    "/tasks/{id}",
    auth=Auth.USER,
    response=TaskOut,
    errors=(404,),
    summary="One of one's own tasks, with its steps and branches",
)
def get_task(req: Request[None, None]) -> TaskOut:
    return _out(service.get(req.user.user_id, req.path_params["id"]))


@router.post(
    "/tasks/{id}/cancel",
    auth=Auth.USER,
    response=TaskOut,
    errors=(404, 409),
    summary="Cancel a task and refund its quota",
)
def cancel_task(req: Request[None, None]) -> TaskOut:
    return _out(service.cancel(req.user.user_id, req.path_params["id"]))
