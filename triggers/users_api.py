"""Users and mail API: GET users/{user_id}, GET users/{user_id}/messages, and the OpenAPI document."""

from __future__ import annotations

import azure.functions as func

from shared.api import views
from shared.http import run_http

bp = func.Blueprint()


@bp.function_name("get_user")
@bp.route(route="users/{user_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_user(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("get_user", context, lambda: views.get_user(req))


@bp.function_name("list_messages")
@bp.route(route="users/{user_id}/messages", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_messages(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("list_messages", context, lambda: views.list_messages(req))


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("openapi", context, lambda: views.openapi(req))
