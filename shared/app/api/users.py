"""The signed-in user's own profile.

`GET /users/me` is served from the cached profile (`app.profiles`): its function never loads
the database layer unless the cache misses. The write path is imported by `PATCH` only.
"""

from __future__ import annotations

from app.api.schemas.users import ProfilePatch, UserOut, user_out
from app.http import Auth, Request, Router

router = Router(tags=("users",))


@router.get("/users/me", auth=Auth.USER, response=UserOut, errors=(401, 404), summary="My profile")
def get_me(req: Request[None, None]) -> UserOut:
    # The profile the request was authorized by: read in the same round trip.
    return user_out(req.user.user)


@router.patch(
    "/users/me",
    auth=Auth.USER,
    body=ProfilePatch,
    response=UserOut,
    errors=(401, 404, 422),
    summary="Change my nickname, avatar or gender",
)
def patch_me(req: Request[ProfilePatch, None]) -> UserOut:
    from app.identity import users  # cold start: only a change loads the database layer

    changes = {name: getattr(req.body, name) for name in req.body.model_fields_set}
    return user_out(users.update_profile(req.user.user_id, changes))
