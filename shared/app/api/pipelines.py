"""Pipeline routes: the public catalog and the admin's definition editor."""

from __future__ import annotations

import re
from typing import Any

from app.api.schemas.pipelines import PipelineList
from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router
from app.http.models import PageQuery
from app.pipeline import catalog
from app.pipeline.definition import PIPELINE_ID, PipelineDefinition

router = Router(tags=("pipelines",))


@router.get(
    "/pipelines",
    auth=Auth.PUBLIC,
    query=PageQuery,
    response=PipelineList,
    summary="Enabled pipelines and what each costs, by id",
)
def list_pipelines(req: Request[None, PageQuery]) -> dict[str, Any]:
    page = catalog.public_page(limit=req.query.limit, cursor=req.query.cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.put(
    "/admin/pipelines/{id}",
    auth=Auth.ADMIN,
    body=PipelineDefinition,
    errors=(403, 422),
    summary="Create or replace a pipeline definition",
)
def put_pipeline(req: Request[PipelineDefinition, None]) -> dict[str, Any]:
    pipeline_id = req.path_params["id"]
    if not re.fullmatch(PIPELINE_ID, pipeline_id):
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            details=[{"loc": ["path", "id"], "msg": "1-64 of a-z, 0-9, _ and -"}],
        )
    from app.pipeline import store  # cold start: only an admin's save loads the database

    return store.save(pipeline_id, req.body, actor=req.actor)
