"""Graph's subscription routes: create (with the validation handshake), list, get, renew
(PATCH), delete and reauthorize."""

from __future__ import annotations

from devtools.graphsim import rich
from devtools.graphsim import subscriptions as subs
from devtools.graphsim.routing import Router
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.wire import GraphError, GraphRequest, GraphResponse, json_response

ROTATION_FIELDS = frozenset({"encryptionCertificate", "encryptionCertificateId"})


class SubscriptionRoutes:
    """Handlers over the simulator's subscription store."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def register(self, router: Router) -> None:
        """Add the subscription routes."""
        router.add("POST", "/subscriptions", self.create)
        router.add("GET", "/subscriptions", self.list)
        router.add("GET", "/subscriptions/{id}", self.get)
        router.add("PATCH", "/subscriptions/{id}", self.renew)
        router.add("DELETE", "/subscriptions/{id}", self.delete)
        router.add("POST", "/subscriptions/{id}/reauthorize", self.reauthorize)

    async def create(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """Validate, run the handshake on every webhook URL, then keep it: 201 or 400, never half-made. An event
        hub gets no handshake: Graph writes its validation message into the hub instead."""
        subscription = subs.build(request.json_body(), self._sim.tenant, self._sim.clock.now())
        urls = [subscription.notification_url]
        if subscription.lifecycle_url and subscription.lifecycle_url != subscription.notification_url:
            urls.append(subscription.lifecycle_url)
        for url in urls:
            if subs.eventhub_address(url) is not None:
                self._sim.deliveries.enqueue("validation", url, [subs.hub_validation_item()])
                continue
            problem = await self._sim.deliveries.validate(url, subscription.id)
            if problem is not None:
                raise GraphError(400, "ValidationError", problem)
        self._sim.subscriptions.add(subscription)
        return json_response(subscription.as_json(request.base_url), status=201)

    async def list(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """Every live subscription of the app."""
        live = self._sim.subscriptions.live(self._sim.clock.now())
        return json_response(
            {"@odata.context": f"{request.base_url}/$metadata#subscriptions", "value": [s.as_json() for s in live]}
        )

    async def get(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """One live subscription, or 404 once it expired on the simulator clock."""
        subscription = self._sim.subscriptions.get(params["id"], self._sim.clock.now())
        return json_response(subscription.as_json(request.base_url))

    async def renew(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """PATCH ``expirationDateTime``, same limits as create; a rich subscription may also change its
        certificate (rotation: ``encryptionCertificate`` + ``encryptionCertificateId``)."""
        now = self._sim.clock.now()
        subscription = self._sim.subscriptions.get(params["id"], now)
        body = request.json_body()
        rotating = subscription.include_resource_data and "encryptionCertificate" in body
        allowed = {"expirationDateTime", "@odata.type"} | (ROTATION_FIELDS if rotating else set())
        unsupported = set(body) - allowed
        if unsupported:
            raise subs.invalid(f"graphsim only renews expirationDateTime (got {', '.join(sorted(unsupported))}).")
        expiration = subs.check_expiration(
            body.get("expirationDateTime"), subscription.target, subscription.include_resource_data, now
        )
        if rotating:
            certificate = rich.check_certificate(body, subscription.target.kind, subscription.select)
            subscription.encryption_certificate, subscription.encryption_certificate_id = certificate
        subscription.expiration = expiration
        return json_response(subscription.as_json(request.base_url))

    async def delete(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """Delete: 204, then no more notifications."""
        subscription = self._sim.subscriptions.get(params["id"], self._sim.clock.now())
        self._sim.subscriptions.remove(subscription.id)
        return GraphResponse(status=204)

    async def reauthorize(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """Answer a ``reauthorizationRequired`` event: 204 for a live subscription."""
        self._sim.subscriptions.get(params["id"], self._sim.clock.now())
        return GraphResponse(status=204)
