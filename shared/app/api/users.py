"""The signed-in user's own profile."""

from __future__ import annotations

from app.http import Auth, Request, Router
from app.identity import users
from app.identity.schemas import ProfilePatch, UserOut

router = Router(tags=("users",))


@router.get("/users/me", auth=Auth.USER, response=UserOut, errors=(401, 404), summary="My profile")
def get_me(req: Request[None, None]) -> UserOut:
    return users.public_user(req.user.user_id)


@router.patch(
    "/users/me",
    auth=Auth.USER,
    body=ProfilePatch,
    response=UserOut,
    errors=(401, 404, 422),
    summary="Change my nickname, avatar or gender",
)
def patch_me(req: Request[ProfilePatch, None]) -> UserOut:
    return users.update_profile(req.user.user_id, req.body)
