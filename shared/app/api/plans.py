"""Plan routes: the public price list and the admin's plan editor."""

from __future__ import annotations

import re
from typing import Any

from app.api.schemas.payments import AdminPlanOut, PlanIn, PlanList
from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router
from app.http.models import PageQuery
from app.payments import plans

router = Router(tags=("payments",))


@router.get(
    "/plans",
    auth=Auth.PUBLIC,
    query=PageQuery,
    response=PlanList,
    summary="The plans on sale, cheapest first (one price: by id)",
)
def list_plans(req: Request[None, PageQuery]) -> dict[str, Any]:
    page = plans.public_page(limit=req.query.limit, cursor=req.query.cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.put(
    "/admin/plans/{id}",
    auth=Auth.ADMIN,
    body=PlanIn,
    response=AdminPlanOut,
    errors=(401, 403, 422),
    summary="Create or replace a plan (a disabled plan is not sold)",
)
def put_plan(req: Request[PlanIn, None]) -> AdminPlanOut:
    plan_id = req.path_params["id"]
    if not re.fullmatch(plans.PLAN_ID, plan_id):
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            details=[{"loc": ["path", "id"], "msg": "1-64 of a-z, 0-9, _ and -"}],
        )
    body = req.body
    plan = plans.save(
        plan_id,
        plans.PlanFields(
            name=body.name,
            price_fen=body.price_fen,
            duration_days=body.duration_days,
            quota=body.quota,
            enabled=body.enabled,
        ),
        actor=req.actor,
    )
    return AdminPlanOut.model_validate(plan, from_attributes=True)
