"""HTTP route modules, one per resource. Each calls services; none holds logic of its own.

`all_routes()` is the route table the OpenAPI document is built from; each SCF function
imports only the module of its own route.
"""

from __future__ import annotations

import importlib

from app.http.routing import Route

# Every route module, in the order the OpenAPI document lists them.
ROUTE_MODULES = (
    "app.api.health",
    "app.api.docs",
    "app.api.metrics",
    "app.api.auth",
    "app.api.users",
    "app.api.admin_users",
    "app.api.admin_secrets",
    "app.api.admin_quota",
    "app.api.pipelines",
    "app.api.tasks",
    "app.api.uploads",
    "app.api.plans",
    "app.api.orders",
    "app.api.payment_notify",
    "app.api.admin_jobs",
)


def all_routes() -> list[Route]:
    routes: list[Route] = []
    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        routes.extend(module.router.routes)
    return routes
