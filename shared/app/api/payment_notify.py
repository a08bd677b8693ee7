"""The providers' notify webhooks. Authenticated by the provider's signature, not a token;
answered in each provider's own words (app.payments.notifications does the work)."""

from __future__ import annotations

from app.api.schemas.payments import WechatNotifyAnswer
from app.http import Auth, Request, Response, Router
from app.payments import notifications

router = Router(tags=("payments",))


@router.post(
    "/payments/wechat/notify",
    auth=Auth.SIGNATURE,
    response=WechatNotifyAnswer,
    errors=(400, 401),
    error_response=WechatNotifyAnswer,
    summary="WeChat Pay v3 notification (signed, resource encrypted with the APIv3 key)",
)
def wechat_notify(req: Request[None, None]) -> Response:
    receipt = notifications.receive("wechat", dict(req.headers), req.raw_body)
    if receipt.acknowledged:
        return Response.json({"code": "SUCCESS", "message": "OK"})
    return Response.json({"code": "FAIL", "message": receipt.reason}, status=receipt.status)


@router.post(
    "/payments/alipay/notify",
    auth=Auth.SIGNATURE,
    content_type="text/plain; charset=utf-8",
    summary="Alipay asynchronous notification (form, RSA2): answered success or fail",
)
def alipay_notify(req: Request[None, None]) -> Response:
    receipt = notifications.receive("alipay", dict(req.headers), req.raw_body)
    return Response.text("success" if receipt.acknowledged else "fail")
