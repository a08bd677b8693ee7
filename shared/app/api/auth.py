"""Sign-in routes: SMS codes, register, login (password or code), WeChat, refresh, logout."""

from __future__ import annotations

from typing import Any

from app.api.schemas.auth import (
    LoginIn,
    RefreshIn,
    RegisterIn,
    SmsCodeIn,
    SmsCodeOut,
    TokenPair,
    WechatLoginIn,
)
from app.api.schemas.users import user_out
from app.config import get_settings
from app.http import Auth, Request, Router
from app.http.models import Empty
from app.identity import service
from app.identity.service import SignIn

router = Router(tags=("auth",))


def _signed_in(req: Request[Any, None], signed: SignIn) -> TokenPair:
    """The pair, with its user named on the invocation's log line (the route is public)."""
    req.extra_log["user_id"] = signed.user.id
    settings = get_settings()
    return TokenPair(
        access_token=signed.access_token,
        refresh_token=signed.refresh_token,
        expires_in=settings.access_token_ttl_s,
        refresh_expires_in=settings.refresh_token_ttl_s,
        user=user_out(signed.user),
        is_new_user=signed.is_new_user,
    )


@router.post(
    "/auth/sms-code",
    auth=Auth.PUBLIC,
    body=SmsCodeIn,
    response=SmsCodeOut,
    errors=(409, 422, 429, 503),
    summary="Send an SMS verification code",
)
def sms_code(req: Request[SmsCodeIn, None]) -> SmsCodeOut:
    sent = service.send_code(req.body.phone, req.body.purpose, req.source_ip)
    return SmsCodeOut(cooldown_s=sent.cooldown_s, expires_in=sent.expires_in)


@router.post(
    "/auth/register",
    auth=Auth.PUBLIC,
    body=RegisterIn,
    response=TokenPair,
    status=201,
    errors=(400, 409, 422, 429),
    summary="Register with phone, password and SMS code",
)
def register(req: Request[RegisterIn, None]) -> TokenPair:
    body = req.body
    signed = service.register(
        body.phone,
        body.password,
        body.code,
        ip=req.source_ip,
        referrer_id=body.referrer_id,
        invite_code=body.invite_code,
        nickname=body.nickname,
    )
    return _signed_in(req, signed)


@router.post(
    "/auth/login",
    auth=Auth.PUBLIC,
    body=LoginIn,
    response=TokenPair,
    errors=(400, 401, 403, 422, 429),
    summary="Sign in with a password or an SMS code",
)
def login(req: Request[LoginIn, None]) -> TokenPair:
    body = req.body
    signed = service.login(body.phone, password=body.password, code=body.code, ip=req.source_ip)
    return _signed_in(req, signed)


@router.post(
    "/auth/wechat-login",
    auth=Auth.PUBLIC,
    body=WechatLoginIn,
    response=TokenPair,
    errors=(400, 403, 422, 429, 502),
    summary="Sign in with a WeChat mini-program login code",
)
def wechat_login(req: Request[WechatLoginIn, None]) -> TokenPair:
    body = req.body
    signed = service.wechat_login(
        body.code,
        ip=req.source_ip,
        nickname=body.nickname,
        avatar=body.avatar,
        invite_code=body.invite_code,
    )
    return _signed_in(req, signed)


@router.post(
    "/auth/refresh",
    auth=Auth.PUBLIC,
    body=RefreshIn,
    response=TokenPair,
    errors=(401, 403, 422),
    summary="Exchange a refresh token for a new pair",
)
def refresh(req: Request[RefreshIn, None]) -> TokenPair:
    return _signed_in(req, service.refresh(req.body.refresh_token))


@router.post(
    "/auth/logout",
    auth=Auth.USER,
    body=Empty,
    status=204,
    errors=(401,),
    summary="End this device's session",
)
def logout(req: Request[Empty, None]) -> None:
    service.logout(req.user)


@router.post(
    "/auth/logout-all",
    auth=Auth.USER,
    body=Empty,
    status=204,
    errors=(401,),
    summary="End every session of the user",
)
def logout_all(req: Request[Empty, None]) -> None:
    service.logout_all(req.user)
