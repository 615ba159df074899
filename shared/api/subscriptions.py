"""HTTP views of subscription management (admin level): list, get, create ad hoc, delete, renew now.

Responses never include a subscription's ``clientState``. Bodies are small JSON objects, checked before
any Graph call: ``{"resource": "users/{id}/messages", "changeType": "created,updated"}``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.errors import InvalidInputError, NotFoundError
from shared.http import json_response

if TYPE_CHECKING:  # the subscription service (and the Graph SDK behind it) is built on first use
    from shared.subscriptions.service import SubscriptionService

MAX_BODY = 16 * 1024
_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


def _subscription_id(req: func.HttpRequest) -> str:
    value = req.route_params.get("subscription_id") or ""
    if not _ID.fullmatch(value):
        raise InvalidInputError("subscription_id must be a Graph subscription id")
    return value


def _create_body(req: func.HttpRequest) -> tuple[str, str]:
    body = req.get_body()
    if len(body) > MAX_BODY:
        raise InvalidInputError(f"body must be at most {MAX_BODY} bytes")
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("body must be a JSON object") from error
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object")
    resource, change_type = data.get("resource"), data.get("changeType")
    if not isinstance(resource, str) or not isinstance(change_type, str):
        raise InvalidInputError('body needs "resource" and "changeType" strings')
    return resource, change_type


async def list_subscriptions(req: func.HttpRequest, service: SubscriptionService) -> func.HttpResponse:
    views = await service.list_subscriptions()
    return json_response({"items": [view.to_dict() for view in views]}, 200, {"Cache-Control": "no-store"})


async def get_subscription(req: func.HttpRequest, service: SubscriptionService) -> func.HttpResponse:
    subscription_id = _subscription_id(req)
    view = await service.get_subscription(subscription_id)
    if view is None:
        raise NotFoundError("no such subscription")
    return json_response(view.to_dict(), 200, {"Cache-Control": "no-store"})


async def create_subscription(req: func.HttpRequest, service: SubscriptionService) -> func.HttpResponse:
    resource, change_type = _create_body(req)
    view = await service.create(resource, change_type)
    return json_response(view.to_dict(), 201)


async def delete_subscription(req: func.HttpRequest, service: SubscriptionService) -> func.HttpResponse:
    subscription_id = _subscription_id(req)
    if not await service.delete(subscription_id):
        raise NotFoundError("no such subscription")
    return func.HttpResponse(status_code=204)


async def renew_subscription(req: func.HttpRequest, service: SubscriptionService) -> func.HttpResponse:
    subscription_id = _subscription_id(req)
    view = await service.renew_now(subscription_id)
    if view is None:
        raise NotFoundError("no such subscription")
    return json_response(view.to_dict(), 200)
