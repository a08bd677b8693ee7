"""Administration of users: find by phone, change role or disable."""

from __future__ import annotations

from app.api.schemas.users import AdminUserPatch, AdminUsersQuery, UserOut, user_out
from app.http import Auth, Request, Router
from app.http.models import Page
from app.identity import users

router = Router(tags=("admin",))


@router.get(
    "/admin/users",
    auth=Auth.ADMIN,
    query=AdminUsersQuery,
    response=Page[UserOut],
    errors=(401, 403, 422),
    summary="List users, newest first; phone matches exactly",
)
def list_users(req: Request[None, AdminUsersQuery]) -> Page[UserOut]:
    q = req.query
    page = users.admin_list(phone=q.phone, limit=q.limit, cursor=q.cursor)
    return Page[UserOut](items=[user_out(u) for u in page.items], next_cursor=page.next_cursor)


@router.patch(
    "/admin/users/{id}",
    auth=Auth.ADMIN,
    body=AdminUserPatch,
    response=UserOut,
    errors=(401, 403, 404, 422),
    summary="Change a user's role or disable the account (ends its sessions; never the last admin)",
)
def patch_user(req: Request[AdminUserPatch, None]) -> UserOut:
    body = req.body
    return user_out(
        users.admin_change(
            req.path_params["id"], actor=req.actor, role=body.role, disabled=body.disabled
        )
    )
