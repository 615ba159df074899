"""A real subscription stack per test: GraphGateway on the simulator, tables on Azurite, a webhook receiver
for the handshake, and a clock that follows the simulator's, so renewal runs on simulated time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from devtools.graphsim.client import SimControl
from shared.events.model import Event
from shared.graph.client import build_graph_client
from shared.graph.credentials import StaticTokenCredential
from shared.graph.delta import DeltaReader
from shared.graph.gateway import GraphGateway
from shared.graph.subscriptions import GraphSubscriptions, ResourceData
from shared.resilience.breaker import BreakerPolicy, BreakerRegistry
from shared.resilience.breaker_store import MemoryBreakerStore
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import RetryPolicy
from shared.settings import Settings
from shared.storage import Tables
from shared.subscriptions.catchup import DeltaCatchup
from shared.subscriptions.delivery import EventHubTarget
from shared.subscriptions.desired import parse_desired
from shared.subscriptions.fleet import FleetStore
from shared.subscriptions.leases import LeaseStore
from shared.subscriptions.origins import OriginStore
from shared.subscriptions.records import SubscriptionRegistry
from shared.subscriptions.service import SubscriptionConfig, SubscriptionService
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer
from tests.integration.graphsim.receiver import Receiver


class SimClock:
    """The simulator's clock, read locally: real time plus the offset the simulator reports."""

    def __init__(self, sim: SimControl) -> None:
        self._sim = sim
        self._offset = timedelta(seconds=float(sim.clock()["offset_s"]))

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset = timedelta(seconds=float(self._sim.advance_clock(delta.total_seconds())["offset_s"]))


@dataclass
class Published:
    """What catch-up published, in order."""

    events: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def types(self) -> list[tuple[str, str | None]]:
        return [(e.type, e.message_id or e.user_id) for e in self.events]


@dataclass
class Stack:
    """One app instance's subscription components (tests build two to race them)."""

    service: SubscriptionService
    registry: SubscriptionRegistry
    origins: OriginStore
    leases: LeaseStore
    catchup: DeltaCatchup
    published: Published


@pytest.fixture(name="sim_clock")
def _sim_clock(graphsim: SimControl) -> SimClock:
    return SimClock(graphsim)


@pytest.fixture(name="gateway")
async def _gateway(graphsim_server: GraphSimServer, storage_connection_string: str) -> AsyncIterator[GraphGateway]:
    """A real gateway on the simulator: short retry budgets, and a breaker that does not trip on the few
    failures the outage tests cause (the breaker has its own tests)."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": storage_connection_string,
            "GRAPH_BASE_URL": graphsim_server.base_url,
            "GRAPH_AUTH_MODE": "static_token",
            "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
        }
    )
    client = build_graph_client(settings, StaticTokenCredential(GRAPHSIM_TOKEN))
    breakers = BreakerRegistry(MemoryBreakerStore(), BreakerPolicy(consecutive_failures=1000, min_calls=1000))
    retry = RetryPolicy(max_attempts=2, budget_seconds=5.0, backoff_base_seconds=0.01, backoff_cap_seconds=0.05)
    yield GraphGateway(client, breakers, retry, KeyedLimiter(4))
    await client.request_adapter._http_client.aclose()


@pytest.fixture(name="tables")
async def _tables(storage_connection_string: str, unique_name: str) -> AsyncIterator[Tables]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    yield Tables(service, unique_name)
    await service.close()


@pytest.fixture(name="mailbox")
def _mailbox(graphsim: SimControl) -> str:
    """The first seeded user's id (its inbox is the mail resource under test)."""
    user_id: str = graphsim.users()[0]["id"]
    return user_id


# Where ``@eventhub`` entries deliver (the simulator needs no stand-in to accept the subscription).
HUB = EventHubTarget("graphsim-hub.servicebus.windows.net", "graph-notifications", "contoso.com")


@pytest.fixture(name="make_stack")
def _make_stack(gateway: GraphGateway, tables: Tables, receiver: Receiver, sim_clock: SimClock) -> Any:
    """``make_stack(desired)``: a fresh set of components on the same tables, like another app instance."""

    def make(
        desired: str = "", resource_data: ResourceData | None = None, config: SubscriptionConfig | None = None
    ) -> Stack:
        leases = LeaseStore(tables, sim_clock)
        published = Published()
        catchup = DeltaCatchup(DeltaReader(gateway), tables, leases, published, clock=sim_clock)
        registry = SubscriptionRegistry(tables)
        origins = OriginStore(tables)
        service = SubscriptionService(
            GraphSubscriptions(gateway),
            registry,
            origins,
            leases,
            catchup,
            desired=parse_desired(desired),
            webhook_base=receiver.url(""),
            config=config,
            clock=sim_clock,
            eventhub=HUB,
            resource_data=resource_data,
            directory=gateway,
            fleet_store=FleetStore(tables),
        )
        return Stack(service, registry, origins, leases, catchup, published)

    return make
