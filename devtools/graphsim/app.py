"""The aiohttp application: one catch-all route feeds ``/v1.0/...`` into the Graph
pipeline (after the base latency), and the control API lives under ``/_sim/``."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from devtools.graphsim.control import Control, control_errors
from devtools.graphsim.graph_batch import BatchRoute
from devtools.graphsim.graph_groups import GroupRoutes
from devtools.graphsim.graph_mail import MailRoutes
from devtools.graphsim.graph_subscriptions import SubscriptionRoutes
from devtools.graphsim.graph_users import UserRoutes
from devtools.graphsim.rich_routes import RichRoutes
from devtools.graphsim.routing import GraphPipeline, Router
from devtools.graphsim.service_principals import ServicePrincipalRoutes
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.wire import GraphRequest

API_PREFIX = "/v1.0"
SIMULATOR_KEY = web.AppKey("simulator", Simulator)
MAX_BODY = 8 * 1024 * 1024


def build_app(sim: Simulator) -> web.Application:
    """Wire the Graph routes and the control API around ``sim``."""
    router = Router()
    pipeline = GraphPipeline(sim, router)
    UserRoutes(sim).register(router)
    GroupRoutes(sim).register(router)
    MailRoutes(sim).register(router)
    SubscriptionRoutes(sim).register(router)
    ServicePrincipalRoutes(sim).register(router)
    BatchRoute(pipeline.handle).register(router)

    async def graph_entry(request: web.Request) -> web.StreamResponse:
        if sim.config.latency_ms:
            await asyncio.sleep(sim.config.latency_ms / 1000)
        graph_request = GraphRequest(
            method=request.method,
            path=request.path[len(API_PREFIX) :] or "/",
            query=request.query,
            headers=request.headers,
            body=await request.read(),
            base_url=f"{request.scheme}://{request.host}{API_PREFIX}",
        )
        answer = await pipeline.handle(graph_request)
        if answer.drop:
            # Close the socket without a status line: the client sees a transport error.
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.Response(status=answer.status, body=json.dumps(answer.body).encode(), headers=answer.headers)

    async def close_deliveries(_: web.Application) -> None:
        await sim.deliveries.close()

    app = web.Application(middlewares=[control_errors], client_max_size=MAX_BODY)
    app[SIMULATOR_KEY] = sim
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", graph_entry)
    Control(sim).register(app)
    RichRoutes(sim).register(app)
    app.on_cleanup.append(close_deliveries)
    return app
