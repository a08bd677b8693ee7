"""Order routes: buy a plan, read one's own order."""

from __future__ import annotations

from typing import Any

from app.api.schemas.payments import OrderIn, OrderOut
from app.http import Auth, Request, Router
from app.payments import orders

router = Router(tags=("payments",))
IDEMPOTENCY_KEY_MAX = 255  # idempotency_keys.key is 255 characters


def _out(view: dict[str, Any]) -> OrderOut:
    return OrderOut.model_validate(view)


@router.post(
    "/orders",
    auth=Auth.USER,
    body=OrderIn,
    response=OrderOut,
    status=201,
    errors=(404, 409, 422, 429, 502),
    idempotency_key=IDEMPOTENCY_KEY_MAX,
    summary="Buy a plan: a pending order with the code to pay it (Idempotency-Key optional)",
)
def create_order(req: Request[OrderIn, None]) -> OrderOut:
    key = req.idempotency_key(max_length=IDEMPOTENCY_KEY_MAX)
    created = orders.create(req.user.user_id, req.body.plan_id, req.body.channel, key)
    req.extra_log.update(order_id=created.order["id"], replayed=created.replayed)
    return _out(created.order)


@router.get(
    "/orders/{id}",
    auth=Auth.USER,
    response=OrderOut,
    errors=(404,),
    summary="One of one's own orders (a pending one is checked with the provider)",
)
def get_order(req: Request[None, None]) -> OrderOut:
    return _out(orders.get(req.user.user_id, req.path_params["id"]))
