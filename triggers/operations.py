"""Operator endpoints (admin key only): the status document and the dashboard page that renders it."""

from __future__ import annotations

import azure.functions as func

from shared.http import json_response
from shared.invocation import run_http
from shared.wiring import registry, status_sources

bp = func.Blueprint()


# The status and dashboard modules are imported on first use: import function_app (indexing) stays short.


async def _status() -> func.HttpResponse:
    from shared.status import build_status

    return json_response(await build_status(status_sources(registry)), 200, {"Cache-Control": "no-store"})


async def _dashboard() -> func.HttpResponse:
    from shared.dashboard import HEADERS, page

    return func.HttpResponse(page(), status_code=200, headers=HEADERS, mimetype="text/html", charset="utf-8")


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("status", context, _status)


@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def dashboard(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("dashboard", context, _dashboard)
