"""Graph request handling shared by top-level and ``$batch`` requests: route matching,
authentication, fault rules, Graph's standard headers and the request log."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from devtools.graphsim.observability import RequestRecord
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.wire import JSON_CONTENT_TYPE, GraphError, GraphRequest, GraphResponse, error_body

Handler = Callable[[GraphRequest, dict[str, str]], Awaitable[GraphResponse]]
UNMATCHED = "UNMATCHED"
_DIAGNOSTIC = json.dumps(
    {"ServerInfo": {"DataCenter": "Local", "Slice": "E", "Ring": "0", "ScaleUnit": "000", "RoleInstance": "graphsim"}}
)


@dataclass(frozen=True)
class Route:
    """A method + path template (e.g. ``GET /users/{id}``) and its handler."""

    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler

    @property
    def name(self) -> str:
        """The route's name in the stats, e.g. ``GET /users/{id}``."""
        return f"{self.method} {self.template}"


class Router:
    """Templates matched in registration order (so ``/users/delta`` precedes ``/users/{id}``)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on ``template``; literal segments ignore case."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self.routes.append(Route(method, template, re.compile(regex, re.IGNORECASE), handler))

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | GraphError:
        """The matching route and its parameters, or the error Graph would answer."""
        path = path.rstrip("/") or "/"
        allowed = False
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict()
            allowed = True
        if allowed:
            return GraphError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed on this resource.")
        segment = next((s for s in reversed(path.split("/")) if s), path)
        return GraphError(404, "ResourceNotFound", f"Resource not found for the segment '{segment}'.")


class GraphPipeline:
    """Runs one Graph request: auth, faults, routing, error rendering, logging."""

    def __init__(self, sim: Simulator, router: Router) -> None:
        self._sim = sim
        self._router = router

    async def handle(self, request: GraphRequest) -> GraphResponse:
        """Answer ``request`` (never raises a GraphError: it becomes Graph's error body)."""
        started = time.perf_counter()
        resolved = self._router.resolve(request.method, request.path)
        route_name = resolved[0].name if isinstance(resolved, tuple) else UNMATCHED
        fault_id: str | None = None
        try:
            self._authenticate(request)
            rule = self._sim.faults.match(request.method, request.path, request.query)
            response: GraphResponse | None = None
            if rule is not None:
                fault_id = rule.id
                if rule.latency_ms:
                    await asyncio.sleep(rule.latency_ms / 1000)
                if rule.action == "drop":
                    if request.batch_id is not None:  # no connection of its own to drop
                        raise GraphError.for_status(504)
                    response = GraphResponse(status=0, drop=True)
                elif rule.status is not None:
                    headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
                    error = GraphError.for_status(rule.status, headers)
                    if rule.error_code:
                        error.code = rule.error_code
                    raise error
            if response is None:
                if isinstance(resolved, GraphError):
                    raise resolved
                route, params = resolved
                response = await route.handler(request, params)
        except GraphError as error:
            response = GraphResponse(error.status, error_body(error, request, self._sim.clock.now()), error.headers)
        self._decorate(request, response)
        self._sim.requests.add(
            RequestRecord(
                time=self._sim.clock.now().timestamp(),
                method=request.method,
                path=request.path,
                query=dict(request.query),
                route=route_name,
                status=response.status,
                fault=fault_id,
                client_request_id=request.client_request_id,
                request_id=request.request_id,
                batch_id=request.batch_id,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        )
        return response

    def _authenticate(self, request: GraphRequest) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        expected = self._sim.config.token
        if expected is not None and token != expected:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")

    @staticmethod
    def _decorate(request: GraphRequest, response: GraphResponse) -> None:
        headers = response.headers
        headers["request-id"] = request.request_id
        headers["client-request-id"] = request.client_request_id
        headers["x-ms-ags-diagnostic"] = _DIAGNOSTIC
        headers.setdefault("Cache-Control", "no-cache")
        if response.body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
            headers.setdefault("OData-Version", "4.0")
