"""Graph change notifications: two webhooks (HTTP) that persist and acknowledge, two queue processors."""

from __future__ import annotations

import azure.functions as func

from shared.events.webhook import validation_token
from shared.http import json_response
from shared.invocation import run_http, run_queue
from shared.names import LIFECYCLE_QUEUE, NOTIFICATIONS_QUEUE
from shared.wiring import LIFECYCLE_PROCESSOR, PROCESSOR, WEBHOOK, registry

bp = func.Blueprint()


async def _webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Validation handshake, or validate + persist every accepted item, then 202 (503 if not persisted)."""
    token = req.params.get("validationToken")
    if token is not None:
        return func.HttpResponse(validation_token(token), status_code=200, mimetype="text/plain", charset="utf-8")
    webhook = await registry.get(WEBHOOK)
    webhook.refuse_oversized(req.headers.get("content-length"))
    result = await webhook.accept(req.get_body())
    return json_response(result.to_dict(), 202)


@bp.function_name("notifications")
@bp.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("notifications", context, lambda: _webhook(req))


@bp.function_name("lifecycle_notifications")
@bp.route(route="notifications/lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def lifecycle_notifications(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await run_http("lifecycle_notifications", context, lambda: _webhook(req))


@bp.function_name("process_notifications")
@bp.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE, connection="AzureWebJobsStorage")
async def process_notifications(msg: func.QueueMessage, context: func.Context) -> None:
    async def handle() -> object:
        return await (await registry.get(PROCESSOR)).process(msg.get_body(), msg.dequeue_count or 1)

    await run_queue("process_notifications", context, msg, handle, queue=NOTIFICATIONS_QUEUE)


@bp.function_name("process_lifecycle")
@bp.queue_trigger(arg_name="msg", queue_name=LIFECYCLE_QUEUE, connection="AzureWebJobsStorage")
async def process_lifecycle(msg: func.QueueMessage, context: func.Context) -> None:
    async def handle() -> object:
        return await (await registry.get(LIFECYCLE_PROCESSOR)).process(msg.get_body(), msg.dequeue_count or 1)

    await run_queue("process_lifecycle", context, msg, handle, queue=LIFECYCLE_QUEUE)
