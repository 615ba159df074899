"""The HTTP front end: function routes with the host's auth levels, plus the admin endpoints.

It turns an aiohttp request into the ``azure.functions.HttpRequest`` the worker would decode (see
``bindings``) and the function's return value back into a response. A failing function gives a bare 500,
as the host does: the details go to the log, never to the caller.

Request bodies are limited like the host's Kestrel ``MaxRequestBodySize`` (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``,
100 MB by default): a declared ``Content-Length`` above the limit is refused with 413 before any of the
body is read, and a chunked body is refused as soon as it passes the limit; nothing beyond the limit is
kept in memory, and the connection is closed after the answer.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from devtools.funchost.bindings import decode_http_request, encode_http_result, http_request_datum
from devtools.funchost.config import DEFAULT_REQUEST_BODY_LIMIT, HostKeys
from devtools.funchost.indexing import FunctionInfo
from devtools.funchost.invoke import REASON_HOST_API, Invoker
from devtools.funchost.routes import RouteTemplate, RouteTemplateError

logger = logging.getLogger("funchost")

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
ADMIN_BODY_LIMIT = 1024 * 1024  # the admin API takes small JSON documents only


class RequestTooLargeError(Exception):
    """The request body is over the limit (declared or while streaming)."""


class AdminApi(Protocol):
    """What the admin endpoints need from the host."""

    def status(self) -> dict[str, Any]: ...

    def function_list(self) -> list[dict[str, Any]]: ...

    def run_non_http(self, name: str, data: str) -> None:
        """Start the named function with ``data`` as trigger input; KeyError if none, ValueError if HTTP."""


@dataclass(frozen=True)
class HttpRoute:
    function: FunctionInfo
    template: RouteTemplate


def build_routes(
    functions: list[FunctionInfo], route_prefix: str, errors: dict[str, str] | None = None
) -> list[HttpRoute]:
    """The HTTP functions' routes, most specific first; a bad template is recorded in ``errors``."""
    routes = []
    for function in functions:
        if function.trigger_type != "httpTrigger":
            continue
        try:
            routes.append(HttpRoute(function, RouteTemplate.compile(function.route, route_prefix)))
        except RouteTemplateError as exc:
            logger.error("The '%s' function is in error: %s", function.name, exc)
            if errors is not None:
                errors[function.name] = str(exc)
    return sorted(routes, key=lambda r: r.template.precedence)


def _key_of(request: web.Request) -> str:
    return request.headers.get(KEY_HEADER) or request.query.get(KEY_QUERY) or ""


def _matches(candidate: str, key: str) -> bool:
    return bool(candidate) and hmac.compare_digest(candidate.encode(), key.encode())


def authorized(level: str, request: web.Request, keys: HostKeys) -> bool:
    """anonymous: anyone; function: the function key or the master key; admin: the master key only."""
    if level == "anonymous":
        return True
    given = _key_of(request)
    if _matches(given, keys.master_key):
        return True
    return level == "function" and _matches(given, keys.function_key)


def _is_loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


def to_web_response(result: object) -> web.Response:
    """The function's return value as the host would send it (HttpResponse, str, bytes or None)."""
    encoded = encode_http_result(result)
    response = web.Response(status=encoded.status, body=encoded.body)
    for name, value in encoded.headers:
        response.headers.add(name, value)
    return response


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or RequestTooLargeError as soon as it is known to be over ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything, so a client cannot make
    the harness buffer a body it will refuse anyway.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestTooLargeError(declared)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body.extend(chunk)
        if len(body) > limit:
            raise RequestTooLargeError(len(body))
    return bytes(body)


def _too_large() -> web.Response:
    """413 with ``Connection: close``. aiohttp then discards (never keeps) what is still coming for up to
    10 s, so the client can read the answer before the connection closes (closing at once would reset
    the connection and lose it)."""
    response = web.Response(status=413)
    response.force_close()
    return response


def _error(status: int) -> web.Response:
    """An error with no body details (the host tells callers nothing about why)."""
    return web.Response(status=status)


class HttpFrontend:
    """The aiohttp application serving the function routes and ``/admin``."""

    def __init__(
        self,
        *,
        routes: list[HttpRoute],
        keys: HostKeys,
        invoker: Invoker,
        admin: AdminApi,
        max_body: int = DEFAULT_REQUEST_BODY_LIMIT,
        extra_routes: list[web.RouteDef] | None = None,
    ) -> None:
        self._extra_routes = extra_routes or []  # the harness's own stand-ins (e.g. the event hubs')
        self._routes = routes
        self._keys = keys
        self._invoker = invoker
        self._admin = admin
        self._max_body = max_body

    def application(self) -> web.Application:
        app = web.Application(client_max_size=ADMIN_BODY_LIMIT)  # function bodies: read_body, not this
        app.router.add_get("/admin/host/status", self._host_status)
        app.router.add_get("/admin/functions", self._list_functions)
        app.router.add_post("/admin/functions/{name}", self._run_function)
        app.router.add_routes(self._extra_routes)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch)  # also paths with encoded newlines
        return app

    # Admin -------------------------------------------------------------------------------------
    async def _host_status(self, request: web.Request) -> web.Response:
        """Open to loopback callers (like a local ``func start``), else the master key is required."""
        if not (_is_loopback(request) or authorized("admin", request, self._keys)):
            return _error(401)
        return web.json_response(self._admin.status())

    async def _list_functions(self, request: web.Request) -> web.Response:
        if not authorized("admin", request, self._keys):
            return _error(401)
        return web.json_response(self._admin.function_list())

    async def _run_function(self, request: web.Request) -> web.Response:
        """The host's "run a non HTTP-triggered function" API: master key, ``{"input": ...}``, 202."""
        if not authorized("admin", request, self._keys):
            return _error(401)
        try:
            payload = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError:
            return _error(400)
        raw_input = payload.get("input", "") if isinstance(payload, dict) else None
        if raw_input is None or isinstance(raw_input, dict | list):
            return _error(400)
        data = raw_input if isinstance(raw_input, str) else json.dumps(raw_input)
        try:
            self._admin.run_non_http(request.match_info["name"], data)
        except KeyError:
            return _error(404)
        except ValueError:
            return _error(400)
        return web.Response(status=202)

    # Functions ---------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.lower().startswith("/admin/"):
            return _error(404)
        allowed: set[str] = set()
        for route in self._routes:
            params = route.template.match(path)
            if params is None:
                continue
            if request.method.upper() not in route.function.methods:
                allowed.update(route.function.methods)
                continue
            if not authorized(route.function.auth_level, request, self._keys):
                return _error(401)
            return await self._invoke(route.function, request, params)
        if allowed:  # RFC 9110: a 405 names the methods the resource supports
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return _error(404)

    async def _invoke(
        self, function: FunctionInfo, request: web.Request, params: Mapping[str, str]
    ) -> web.StreamResponse:
        try:
            body = await read_body(request, self._max_body)
        except RequestTooLargeError:
            return _too_large()
        headers: dict[str, str] = {}  # as received (Content-Length included), repeated ones comma-joined
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        query: dict[str, str] = {}
        for name, value in request.query.items():
            query.setdefault(name, value)
        datum = http_request_datum(
            method=request.method, url=str(request.url), headers=headers, query=query, params=params, body=body
        )
        try:
            result = await self._invoker.invoke(
                function,
                decode_http_request(datum),
                reason=REASON_HOST_API,
                trace_parent=request.headers.get("traceparent"),
            )
        except Exception:  # already logged by the invoker; the caller gets no details
            return _error(500)
        try:
            return to_web_response(result)
        except TypeError:
            logger.exception("Function '%s' returned a value the HTTP binding cannot send", function.name)
            return _error(500)
