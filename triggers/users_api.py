"""Users and mail API: GET users/{user_id}, users/{user_id}/messages[/{message_id}], and the OpenAPI document."""

from __future__ import annotations

import azure.functions as func

from shared.invocation import run_http
from shared.wiring import DIRECTORY, registry, settings

bp = func.Blueprint()


@bp.function_name("get_user")
@bp.route(route="users/{user_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_user(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async def handle() -> func.HttpResponse:
        from shared.api import views  # on first use: import function_app (indexing) stays short

        return await views.get_user(req, await registry.get(DIRECTORY), settings().cache_user_ttl_seconds)

    return await run_http("get_user", context, handle)


@bp.function_name("list_messages")
@bp.route(route="users/{user_id}/messages", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_messages(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async def handle() -> func.HttpResponse:
        from shared.api import views

        return await views.list_messages(req, await registry.get(DIRECTORY), settings().cache_messages_ttl_seconds)

    return await run_http("list_messages", context, handle)


@bp.function_name("get_message")
@bp.route(route="users/{user_id}/messages/{message_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_message(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async def handle() -> func.HttpResponse:
        from shared.api import views

        return await views.get_message(req, await registry.get(DIRECTORY), settings().cache_messages_ttl_seconds)

    return await run_http("get_message", context, handle)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from shared.api import views

    return await run_http("openapi", context, lambda: views.openapi(req))
