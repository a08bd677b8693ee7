"""The shapes of the pipeline resource: the public catalog. A pipeline's definition (the body
of `PUT /admin/pipelines/{id}`) is the domain's own language, `app.pipeline.definition`."""

from __future__ import annotations

from pydantic import BaseModel


class PipelineSummary(BaseModel):
    id: str
    name: str
    description: str
    cost: int


class PipelineList(BaseModel):
    items: list[PipelineSummary]
    next_cursor: str | None = None
