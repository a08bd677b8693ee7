"""Administration of the secrets pipelines send upstream: store one, list their names. A value
is never answered, whatever the route (app.vault)."""

from __future__ import annotations

from app.api.schemas.secrets import SecretIn, SecretOut
from app.http import Auth, Request, Router
from app.http.models import Page, PageQuery

router = Router(tags=("admin",))


@router.put(
    "/admin/secrets/{name}",
    auth=Auth.ADMIN,
    body=SecretIn,
    status=204,
    errors=(401, 403, 422, 503),
    summary="Store a secret (encrypted; never returned)",
)
def put_secret(req: Request[SecretIn, None]) -> None:
    from app.vault import store  # cold start: only a store loads the crypto and the database

    store.put(req.path_params["name"], req.body.value, actor=req.actor)


@router.get(
    "/admin/secrets",
    auth=Auth.ADMIN,
    query=PageQuery,
    response=Page[SecretOut],
    errors=(401, 403, 422),
    summary="The stored secrets' names and when each was set, newest first",
)
def list_secrets(req: Request[None, PageQuery]) -> Page[SecretOut]:
    from app.vault import store  # cold start: the database, only when listing

    page = store.listed(limit=req.query.limit, cursor=req.query.cursor)
    return Page[SecretOut](
        items=[SecretOut(name=s.name, updated_at=s.updated_at) for s in page.items],
        next_cursor=page.next_cursor,
    )
