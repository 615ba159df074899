"""HTTP for rich notifications: the simulated token service's documents (what ``login.microsoftonline.com``
serves, at the simulator's root: ``/common/.well-known/openid-configuration`` and ``/common/discovery/keys``)
and the control routes under ``/_sim/richdata`` (faults, signing-key rotation, fetch counters)."""

from __future__ import annotations

import json

from aiohttp import web

from devtools.graphsim.simulator import Simulator

OPENID_CONFIGURATION_PATH = "/common/.well-known/openid-configuration"
KEYS_PATH = "/common/discovery/keys"


class RichRoutes:
    """Handlers bound to one simulator's ``rich`` state."""

    def __init__(self, sim: Simulator) -> None:
        self._rich = sim.rich

    def register(self, app: web.Application) -> None:
        """Add the token-service documents and the control routes."""
        r = app.router
        r.add_get(OPENID_CONFIGURATION_PATH, self.openid_configuration)
        r.add_get(KEYS_PATH, self.keys)
        r.add_get("/_sim/richdata", self.state)
        r.add_post("/_sim/richdata/faults", self.add_fault)
        r.add_delete("/_sim/richdata/faults", self.clear_faults)
        r.add_post("/_sim/richdata/rotate-signing-key", self.rotate)

    async def openid_configuration(self, request: web.Request) -> web.Response:
        """The OpenID configuration (counts as a fetch)."""
        return web.json_response(self._rich.issuer.openid_configuration(f"{request.scheme}://{request.host}"))

    async def keys(self, _: web.Request) -> web.Response:
        """The published signing keys (counts as a fetch)."""
        return web.json_response(self._rich.issuer.jwks())

    async def state(self, _: web.Request) -> web.Response:
        """Pending faults, key ids, fetch counters."""
        return web.json_response(self._rich.state())

    async def add_fault(self, request: web.Request) -> web.Response:
        """``{"fault": name, "count": n}``: spoil the next n items or POSTs (400 for an unknown fault)."""
        body = json.loads(await request.read() or b"{}")
        self._rich.add_fault(str(body.get("fault", "")), body.get("count", 1))
        return web.json_response(self._rich.state(), status=201)

    async def clear_faults(self, _: web.Request) -> web.Response:
        """Forget pending faults."""
        self._rich.clear_faults()
        return web.Response(status=204)

    async def rotate(self, request: web.Request) -> web.Response:
        """``{"keep_previous": bool}``: sign with a new key from now on."""
        body = json.loads(await request.read() or b"{}")
        self._rich.issuer.rotate(keep_previous=bool(body.get("keep_previous", False)))
        return web.json_response(self._rich.state())
