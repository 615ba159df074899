"""Subscription management (admin HTTP) and the renewal timer that keeps subscriptions alive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import azure.functions as func

from shared.api import subscriptions as views
from shared.index_time import timer_schedule
from shared.invocation import run_http, run_timer
from shared.subscriptions.timer import run_renewal
from shared.wiring import SUBSCRIPTIONS, registry, settings

if TYPE_CHECKING:
    from shared.subscriptions.service import SubscriptionService

bp = func.Blueprint()
ADMIN = func.AuthLevel.ADMIN
View = Callable[[func.HttpRequest, "SubscriptionService"], Awaitable[func.HttpResponse]]


async def _run(name: str, view: View, req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async def handle() -> func.HttpResponse:
        return await view(req, await registry.get(SUBSCRIPTIONS))

    return await run_http(name, context, handle)


@bp.function_name("list_subscriptions")
@bp.route(route="subscriptions", methods=["GET"], auth_level=ADMIN)
async def list_subscriptions(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _run("list_subscriptions", views.list_subscriptions, req, context)


@bp.function_name("create_subscription")
@bp.route(route="subscriptions", methods=["POST"], auth_level=ADMIN)
async def create_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _run("create_subscription", views.create_subscription, req, context)


@bp.function_name("get_subscription")
@bp.route(route="subscriptions/{subscription_id}", methods=["GET"], auth_level=ADMIN)
async def get_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _run("get_subscription", views.get_subscription, req, context)


@bp.function_name("delete_subscription")
@bp.route(route="subscriptions/{subscription_id}", methods=["DELETE"], auth_level=ADMIN)
async def delete_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _run("delete_subscription", views.delete_subscription, req, context)


@bp.function_name("renew_subscription")
@bp.route(route="subscriptions/{subscription_id}/renew", methods=["POST"], auth_level=ADMIN)
async def renew_subscription(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _run("renew_subscription", views.renew_subscription, req, context)


@bp.function_name("renew_subscriptions")
@bp.timer_trigger(
    arg_name="timer", schedule=timer_schedule("SUBSCRIPTION_RENEWAL_SCHEDULE"), run_on_startup=True, use_monitor=True
)
async def renew_subscriptions(timer: func.TimerRequest, context: func.Context) -> None:
    async def handle() -> None:
        service = await registry.get(SUBSCRIPTIONS)
        await run_renewal(service, reconcile=bool(settings().webhook_base_url), past_due=timer.past_due)

    await run_timer("renew_subscriptions", context, handle)
