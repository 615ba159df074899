"""Subscription management (admin HTTP) and the renewal timer that keeps subscriptions alive."""

from __future__ import annotations

import azure.functions as func

from shared.api import subscriptions as views
from shared.http import run_http
from shared.subscriptions.timer import run_renewal

bp = func.Blueprint()
ADMIN = func.AuthLevel.ADMIN


@bp.function_name("list_subscriptions")
@bp.route(route="subscriptions", methods=["GET"], auth_level=ADMIN)
async def list_subscriptions(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("list_subscriptions", context, lambda: views.list_subscriptions(req))


@bp.function_name("create_subscription")
@bp.route(route="subscriptions", methods=["POST"], auth_level=ADMIN)
async def create_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("create_subscription", context, lambda: views.create_subscription(req))


@bp.function_name("get_subscription")
@bp.route(route="subscriptions/{subscription_id}", methods=["GET"], auth_level=ADMIN)
async def get_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("get_subscription", context, lambda: views.get_subscription(req))


@bp.function_name("delete_subscription")
@bp.route(route="subscriptions/{subscription_id}", methods=["DELETE"], auth_level=ADMIN)
async def delete_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("delete_subscription", context, lambda: views.delete_subscription(req))


@bp.function_name("renew_subscription")
@bp.route(route="subscriptions/{subscription_id}/renew", methods=["POST"], auth_level=ADMIN)
async def renew_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("renew_subscription", context, lambda: views.renew_subscription(req))


@bp.function_name("renew_subscriptions")
@bp.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_RENEWAL_SCHEDULE%", run_on_startup=True, use_monitor=True)
async def renew_subscriptions(timer: func.TimerRequest, context: func.Context) -> None:
    await run_renewal(context.invocation_id, past_due=timer.past_due)
