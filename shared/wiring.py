"""The wiring: the one module that knows how settings become policies and how the app's services are
built from each other (the composition root, with the container's mechanics in ``shared/container.py``).

``registry`` is the process's container. Triggers (through ``shared/invocation.py``) and the ops CLI take
what a function needs from it and pass it into feature code; no feature module imports this one.
Factories import their SDKs inside the function body so ``import function_app`` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shared.container import Registry, Service
from shared.names import BREAKERS_TABLE
from shared.policies import breaker_policy, cache_policy, graph_attempt_seconds, retry_policy
from shared.settings import Settings
from shared.startup_checks import read_settings
from shared.storage import Queues, Tables
from shared.storage_clients import STORAGE_CLIENT_OPTIONS as STORAGE_CLIENT_OPTIONS  # re-exported for tests

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    from shared.api.users import DirectoryApi
    from shared.background import BackgroundGate
    from shared.cache import CacheManager
    from shared.directory import GraphReads
    from shared.events.dedupe import DedupeStore
    from shared.events.dispatch import ExactlyOnceDispatcher
    from shared.events.eventhub import EventHubIngest
    from shared.events.lifecycle import LifecycleProcessor, LifecycleReactions
    from shared.events.model import Event
    from shared.events.processor import NotificationProcessor
    from shared.events.webhook import NotificationWebhook
    from shared.graph.delta import DeltaReader
    from shared.graph.gateway import GraphGateway
    from shared.graph.pacing import RequestBudget
    from shared.graph.subscriptions import ResourceData
    from shared.loop_lag import LoopLagMonitor
    from shared.resilience.breaker import BreakerRegistry
    from shared.status import StatusSources
    from shared.subscriptions.clock import Clock
    from shared.subscriptions.fleet import FleetStore
    from shared.subscriptions.records import SubscriptionRecord, SubscriptionRegistry
    from shared.subscriptions.service import SubscriptionService


registry = Registry()


# --- The app's services -----------------------------------------------------------------------------

SETTINGS: Service[Settings] = Service("settings", read_settings)


def settings() -> Settings:
    """The process's validated settings (read from the environment on first use)."""
    return registry.get_sync(SETTINGS)


def _make_storage_credential() -> AsyncTokenCredential | None:
    from shared.storage_clients import storage_credential

    return storage_credential(settings())


async def _close_credential(credential: AsyncTokenCredential | None) -> None:
    if credential is not None:
        await credential.close()


def _make_table_service() -> TableServiceClient:
    from shared.storage_clients import proxy_options, table_service

    return table_service(settings(), registry.get_sync(STORAGE_CREDENTIAL), **proxy_options(os.environ))


def _make_queue_service() -> QueueServiceClient:
    from shared.storage_clients import proxy_options, queue_service

    return queue_service(settings(), registry.get_sync(STORAGE_CREDENTIAL), **proxy_options(os.environ))


# One managed identity for both clients (None with a connection string); closed with the registry.
STORAGE_CREDENTIAL: Service[AsyncTokenCredential | None] = Service(
    "storage_credential", _make_storage_credential, _close_credential
)
TABLE_SERVICE: Service[TableServiceClient] = Service("table_service", _make_table_service, lambda c: c.close())
QUEUE_SERVICE: Service[QueueServiceClient] = Service("queue_service", _make_queue_service, lambda c: c.close())


async def _make_tables() -> Tables:
    return Tables(await registry.get(TABLE_SERVICE), settings().storage_table_prefix)


async def _make_queues() -> Queues:
    return Queues(await registry.get(QUEUE_SERVICE))


TABLES: Service[Tables] = Service("tables", _make_tables)
QUEUES: Service[Queues] = Service("queues", _make_queues)


# --- Cache, breakers, Graph --------------------------------------------------------------------------


async def _make_cache() -> CacheManager:
    from shared.cache import CacheManager
    from shared.metrics import CacheMetrics

    return CacheManager.from_tables(await registry.get(TABLES), cache_policy(settings()), listener=CacheMetrics())


async def _make_breakers() -> BreakerRegistry:
    from shared.metrics.breakers import BreakerMetrics
    from shared.resilience.breaker import BreakerRegistry
    from shared.resilience.breaker_store import TableBreakerStore

    policy = breaker_policy(settings())
    tables = await registry.get(TABLES)
    # The table is opened on first use: a cold instance with Storage down still builds its breakers, and
    # the outage is handled by BREAKER_STORAGE_OUTAGE like any other (never a raw 500).
    store = TableBreakerStore(lambda: tables.get(BREAKERS_TABLE), timeout=policy.storage_timeout_seconds)
    return BreakerRegistry(store, policy, listeners=[BreakerMetrics()])


async def _make_gateway() -> GraphGateway:
    # The only place that imports the Graph SDK, and only when a Graph call is about to happen.
    from shared.graph.client import build_graph_client, build_http_client
    from shared.graph.credentials import build_credential
    from shared.graph.gateway import GraphGateway
    from shared.resilience.limits import KeyedLimiter

    current = settings()
    credential = build_credential(current)
    http_client = build_http_client(current)

    async def close() -> None:
        await http_client.aclose()
        await credential.close()

    client = build_graph_client(current, credential, http_client)
    # A caller waits for one of the mailbox's slots at most as long as one request may take.
    limiter = KeyedLimiter(
        current.graph_mailbox_concurrency, acquire_timeout=current.graph_timeout_seconds, name="graph-mailbox"
    )
    return GraphGateway(
        client,
        await registry.get(BREAKERS),
        retry_policy(current),
        limiter,
        on_close=close,
        attempt_timeout=graph_attempt_seconds(current),
    )


CACHE: Service[CacheManager] = Service("cache", _make_cache, lambda cache: cache.aclose())
# Breakers have no connections of their own; closing writes this instance's last counts.
BREAKERS: Service[BreakerRegistry] = Service("breakers", _make_breakers, lambda breakers: breakers.flush())
GRAPH: Service[GraphGateway] = Service("graph", _make_gateway, lambda gateway: gateway.aclose())


def _make_budget() -> RequestBudget:
    from shared.graph.pacing import RateLimit, RequestBudget

    rate = settings().graph_rate_limit
    return RequestBudget(RateLimit(rate.requests, rate.seconds))


BUDGET: Service[RequestBudget] = Service("graph_budget", _make_budget)


async def delta_reader() -> DeltaReader:
    """A delta reader paced by the process's request budget (mirror rounds and mail catch-ups share it)."""
    from shared.graph.delta import DeltaReader

    budget = await registry.get(BUDGET)
    return DeltaReader(
        await registry.get(GRAPH),
        pace=budget.acquire,
        on_response=lambda response: budget.observe(response.status_code, response.headers),
    )


async def _make_directory() -> DirectoryApi:
    from shared.api.users import DirectoryApi
    from shared.wiring_mirror import mirror_reader

    async def graph() -> GraphReads:
        return await registry.get(GRAPH)

    return DirectoryApi(await registry.get(CACHE), graph, await mirror_reader())


DIRECTORY: Service[DirectoryApi] = Service("directory", _make_directory)


# --- Notification pipeline (no Graph SDK on the webhook path) ----------------------------------------


async def _make_subscription_registry() -> SubscriptionRegistry:
    from shared.subscriptions.records import SubscriptionRegistry

    return SubscriptionRegistry(await registry.get(TABLES))


async def _make_webhook() -> NotificationWebhook:
    from dataclasses import replace

    from shared.events.notifications import DEFAULT_LIMITS
    from shared.events.webhook import NotificationWebhook, WebhookConfig
    from shared.wiring_rich import post_verifier

    limits = replace(DEFAULT_LIMITS, max_body_bytes=settings().webhook_max_body_bytes)
    flush_interval = settings().webhook_flush_interval_ms / 1000
    config = WebhookConfig(limits=limits, flush_interval_seconds=flush_interval)
    subscriptions = await registry.get(SUBSCRIPTION_REGISTRY)
    on_ack = registry.get_sync(BACKGROUND).on_ack  # slow acknowledgements make processing yield
    queues = await registry.get(QUEUES)
    return NotificationWebhook(subscriptions, queues, config, on_ack=on_ack, verify_post=await post_verifier())


async def _make_dispatcher() -> ExactlyOnceDispatcher:
    """The event bus with the built-in handlers, behind per-handler dedupe markers."""
    from shared.directory import CACHE_NAMES, CacheInvalidationAdapter, enrich_event
    from shared.events.bus import EventBus
    from shared.events.dispatch import ExactlyOnceDispatcher
    from shared.events.handlers import EventForwarder, ForwardingConfig, register_builtin_handlers

    current = settings()
    queues = await registry.get(QUEUES)
    # With enrichment a handler makes a whole logical Graph call, retries included: give it that long.
    handler_timeout = current.retry_budget_seconds + current.graph_timeout_seconds if current.forward_enrich else 10.0
    bus = EventBus(default_timeout=handler_timeout)
    forwarding = ForwardingConfig(enrich=current.forward_enrich, events_per_message=current.forward_events_per_message)

    async def enricher(event: Event) -> dict[str, Any] | None:
        graph = await registry.get(GRAPH)
        return await enrich_event(graph, event)

    register_builtin_handlers(
        bus,
        cache=CacheInvalidationAdapter(await registry.get(CACHE)),
        forwarder=EventForwarder(queues, forwarding, enricher if current.forward_enrich else None),
        cache_names=CACHE_NAMES,  # the domain's names, not a second copy that must happen to agree
        cache_data=current.rich_notifications_cache,
    )
    return ExactlyOnceDispatcher(bus, await registry.get(DEDUPE))


async def _make_dedupe() -> DedupeStore:
    from shared.events.dedupe import DedupeStore

    return DedupeStore(await registry.get(TABLES))


async def _make_processor() -> NotificationProcessor:
    from shared.events.processor import NotificationProcessor
    from shared.wiring_mirror import notification_dispatcher
    from shared.wiring_rich import decryptor

    marks: DedupeStore = await registry.get(DEDUPE)  # each bad item's poison write happens once
    gate = registry.get_sync(BACKGROUND)
    dispatcher, queues = await notification_dispatcher(), await registry.get(QUEUES)
    return NotificationProcessor(dispatcher, queues, poison_marks=marks, gate=gate, decrypt=decryptor())


def _make_background_gate() -> BackgroundGate:
    from shared.background import BackgroundGate, GateConfig

    current = settings()
    return BackgroundGate(
        GateConfig(
            target_lag=current.background_target_lag_ms / 1000,
            target_ack=current.background_target_ack_ms / 1000,
            target_delay=current.background_target_delay_ms / 1000,
        )
    )


def _make_loop_lag() -> LoopLagMonitor:
    """The loop's lag, sampled for the status page and to steer the background gate."""
    from shared import metrics
    from shared.loop_lag import LoopLagMonitor

    return LoopLagMonitor(listeners=(metrics.record_loop_lag, registry.get_sync(BACKGROUND).on_lag))


async def _make_lifecycle_processor() -> LifecycleProcessor:
    from shared.events.lifecycle import LifecycleProcessor

    queues, marks = await registry.get(QUEUES), await registry.get(DEDUPE)
    return LifecycleProcessor(await registry.get(LIFECYCLE_REACTIONS), queues, poison_marks=marks)


async def _make_eventhub_ingest() -> EventHubIngest:
    """The hub path: the webhook's clientState source and limits, the queues' processors."""
    from shared.events.eventhub import EventHubIngest

    limits = (await registry.get(WEBHOOK)).config.limits
    changes, lifecycle = await registry.get(PROCESSOR), await registry.get(LIFECYCLE_PROCESSOR)
    subscriptions, queues = await registry.get(SUBSCRIPTION_REGISTRY), await registry.get(QUEUES)
    marks: DedupeStore = await registry.get(DEDUPE)  # each malformed event is parked once
    return EventHubIngest(subscriptions, changes, lifecycle, queues, poison_marks=marks, limits=limits)


SUBSCRIPTION_REGISTRY: Service[SubscriptionRegistry] = Service("subscription_registry", _make_subscription_registry)
WEBHOOK: Service[NotificationWebhook] = Service("webhook", _make_webhook)
DEDUPE: Service[DedupeStore] = Service("dedupe", _make_dedupe)
DISPATCHER: Service[ExactlyOnceDispatcher] = Service("dispatcher", _make_dispatcher)
PROCESSOR: Service[NotificationProcessor] = Service("processor", _make_processor)
LIFECYCLE_PROCESSOR: Service[LifecycleProcessor] = Service("lifecycle_processor", _make_lifecycle_processor)
EVENTHUB_INGEST: Service[EventHubIngest] = Service("eventhub_ingest", _make_eventhub_ingest)
BACKGROUND: Service[BackgroundGate] = Service("background_gate", _make_background_gate)
LOOP_LAG: Service[LoopLagMonitor] = Service("loop_lag", _make_loop_lag, lambda monitor: monitor.stop())


# --- Subscription lifecycle --------------------------------------------------------------------------


async def _make_subscriptions() -> SubscriptionService:
    """The subscription service; delta catch-up publishes through the same deduplicating dispatcher as
    live notifications, so overlapping sources cause no double effects."""
    from datetime import timedelta

    from shared.graph.subscriptions import GraphSubscriptions
    from shared.subscriptions.catchup import DeltaCatchup
    from shared.subscriptions.delivery import EventHubTarget
    from shared.subscriptions.desired import parse_desired
    from shared.subscriptions.fleet import FleetStore
    from shared.subscriptions.leases import LeaseStore
    from shared.subscriptions.origins import OriginStore
    from shared.subscriptions.service import SubscriptionConfig, SubscriptionService
    from shared.wiring_mirror import notification_dispatcher, publisher

    current = settings()
    tables = await registry.get(TABLES)
    gateway = await registry.get(GRAPH)
    dispatcher = await notification_dispatcher()

    leases = LeaseStore(tables)
    tenant = current.eventhub_tenant or current.graph_tenant_id
    hub = (
        current.eventhub_namespace
        and tenant
        and EventHubTarget(current.eventhub_namespace, current.eventhub_name, tenant)
    )
    return SubscriptionService(
        GraphSubscriptions(gateway),
        await registry.get(SUBSCRIPTION_REGISTRY),
        OriginStore(tables),
        leases,
        DeltaCatchup(await delta_reader(), tables, leases, publisher(dispatcher)),
        desired=parse_desired(current.graph_subscriptions),
        webhook_base=current.webhook_base_url or "",
        config=SubscriptionConfig(renew_before=timedelta(hours=current.subscription_renew_before_hours)),
        eventhub=hub or None,
        resource_data=_resource_data() if current.rich_notifications else None,
        clock=registry.get_sync(SUBSCRIPTION_CLOCK),
        directory=gateway,
        fleet_store=FleetStore(tables),
    )


def _resource_data() -> ResourceData:
    """What ``+data`` subscriptions ask Graph for: the fields ``GET /api/users/{id}/messages/{message_id}``
    serves (an event's data has that shape, and refreshes that cache entry), encrypted for our certificate."""
    from shared.api.params import MESSAGE_RESOURCE_FIELDS
    from shared.graph.subscriptions import EncryptionCertificate, ResourceData
    from shared.wiring_rich import KEY_RING

    key = registry.get_sync(KEY_RING).current
    return ResourceData(MESSAGE_RESOURCE_FIELDS, EncryptionCertificate(key.encryption_certificate, key.certificate_id))


async def _make_subscription_reactions() -> LifecycleReactions:
    return await registry.get(SUBSCRIPTIONS)


def _make_subscription_clock() -> Clock:
    from shared.subscriptions.clock import utcnow

    return utcnow


# What the subscription lifecycle calls now (a benchmark of simulated days puts the simulator's clock here).
SUBSCRIPTION_CLOCK: Service[Clock] = Service("subscription-clock", _make_subscription_clock)
SUBSCRIPTIONS: Service[SubscriptionService] = Service("subscriptions", _make_subscriptions)
# The lifecycle processor's reactions are the subscription service (a Protocol view of it).
LIFECYCLE_REACTIONS: Service[LifecycleReactions] = Service("lifecycle_reactions", _make_subscription_reactions)


# --- What operator views read (built from the registry, never by the features themselves) -----------


def subscription_records(services: Registry) -> Callable[[], Awaitable[list[SubscriptionRecord]]]:
    """A getter of every subscription record (status page, expiry gauge)."""

    async def records() -> list[SubscriptionRecord]:
        return await (await services.get(SUBSCRIPTION_REGISTRY)).list_all()

    return records


def status_sources(services: Registry) -> StatusSources:
    """Where the status document reads each section, for this registry (the app's, or the ops CLI's)."""
    from shared.status import StatusSources

    async def breakers() -> BreakerRegistry:
        return await services.get(BREAKERS)

    async def queues() -> Queues:
        return await services.get(QUEUES)

    async def fleets() -> FleetStore:
        from shared.subscriptions.fleet import FleetStore

        return FleetStore(await services.get(TABLES))

    return StatusSources(
        breakers=breakers,
        subscriptions=subscription_records(services),
        queues=queues,
        cache=lambda: services.peek(CACHE),
        graph_mode=settings().graph_mode,
        fleets=fleets,
    )


async def check_health(services: Registry) -> tuple[int, dict[str, Any]]:
    """``/api/health`` with this registry's raw storage clients (no storage-error layer: the probe wants
    the SDK's own error type)."""
    from shared.health import check_health as probe
    from shared.health import first_item

    current = settings()
    tables, queues = await services.get(TABLE_SERVICE), await services.get(QUEUE_SERVICE)
    return await probe(
        lambda: first_item(tables.list_tables(results_per_page=1)),
        lambda: first_item(queues.list_queues(results_per_page=1)),
        timeout=current.health_probe_timeout_seconds,
        graph_mode=current.graph_mode,
    )
