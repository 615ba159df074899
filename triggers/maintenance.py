"""Health endpoint and the sweeper timer (expired cache rows, old dedupe markers, old mirror tombstones)."""

from __future__ import annotations

import azure.functions as func

from shared.http import json_response
from shared.index_time import timer_schedule
from shared.invocation import run_http, run_timer
from shared.maintenance import run_sweep
from shared.wiring import CACHE, DEDUPE, check_health, registry
from shared.wiring_mirror import sweep_tombstones

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async def handle() -> func.HttpResponse:
        status, body = await check_health(registry)
        return json_response(body, status, {"Cache-Control": "no-store"})

    return await run_http("health", context, handle)


@bp.function_name("sweep")
@bp.timer_trigger(arg_name="timer", schedule=timer_schedule("MAINTENANCE_SCHEDULE"), use_monitor=True)
async def sweep(timer: func.TimerRequest, context: func.Context) -> None:
    async def handle() -> None:
        cache, dedupe = await registry.get(CACHE), await registry.get(DEDUPE)
        sweepers = {"expired cache rows": cache.sweep_expired, "dedupe markers": dedupe.sweep}
        await run_sweep({**sweepers, **sweep_tombstones()})

    await run_timer("sweep", context, handle)
