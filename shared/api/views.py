"""HTTP views of the users/mail API: parse the request, ask ``DirectoryApi``, answer with cache headers.

Every answer says how fresh it is: ``X-Cache`` (hit-l1 | hit-l2 | mirror | miss | bypass | stale), ``Age``,
``ETag`` (a hash of the content) and ``Cache-Control``; ``If-None-Match`` with a matching ETag is answered 304. A
``hit`` means no Graph call was made for the request; a request that had to call Graph (e.g. to resolve a
UPN) says ``miss`` even when the value itself came from the cache (``Age`` is still the value's age), and
``bypass`` when it came from Graph because the cache's Table Storage was unavailable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api.openapi import openapi_document
from shared.api.params import parse_message_id, parse_page_request, parse_user_id
from shared.http import json_response

if TYPE_CHECKING:  # the cache package (and azure.core) is imported on first use, not with the app
    from shared.api.users import DirectoryApi
    from shared.cache import CacheResult


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def cached_response(req: func.HttpRequest, result: CacheResult[Any], fresh_for: float) -> func.HttpResponse:
    """200 with the value (or 304 when the client's ETag matches), plus the freshness headers."""
    etag = result.etag
    max_age = 0 if result.source == "stale" else max(0, math.floor(fresh_for - result.age))
    headers = {
        "ETag": etag,
        "X-Cache": result.source,
        "Age": str(max(0, math.floor(result.age))),
        "Cache-Control": f"private, max-age={max_age}",
    }
    if _etag_matches(req.headers.get("If-None-Match"), etag):
        return func.HttpResponse(status_code=304, headers=headers)
    return json_response(result.value, 200, headers)


async def get_user(req: func.HttpRequest, directory: DirectoryApi, fresh_for: float) -> func.HttpResponse:
    """``GET /api/users/{user_id}``; ``fresh_for`` is the users' cache TTL (for ``Cache-Control``)."""
    user = parse_user_id(req.route_params.get("user_id"))
    return cached_response(req, await directory.user(user), fresh_for)


async def list_messages(req: func.HttpRequest, directory: DirectoryApi, fresh_for: float) -> func.HttpResponse:
    """``GET /api/users/{user_id}/messages?top=&cursor=&fields=``; ``fresh_for`` as for users."""
    user = parse_user_id(req.route_params.get("user_id"))
    page = parse_page_request(req.params)
    return cached_response(req, await directory.messages(user, page), fresh_for)


async def get_message(req: func.HttpRequest, directory: DirectoryApi, fresh_for: float) -> func.HttpResponse:
    """``GET /api/users/{user_id}/messages/{message_id}``; ``fresh_for`` as for message pages."""
    user = parse_user_id(req.route_params.get("user_id"))
    message_id = parse_message_id(req.route_params.get("message_id"))
    return cached_response(req, await directory.message(user, message_id), fresh_for)


async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/openapi.json``."""
    return json_response(openapi_document(), 200, {"Cache-Control": "public, max-age=300"})
