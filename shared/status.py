"""The status document behind ``GET /api/status``, the dashboard and ``python -m shared.ops status``.

Shared state (breakers, subscriptions, queue depths) is read from Storage, so any instance (or the ops
CLI) shows the same; the process section (cache counters, recent Graph outcomes, latency statistics) is
this instance's own. Each section is read under a time limit and fails alone: with Storage down the page
still shows what this process knows, and says which section is missing and why (an error type, never a
message that could carry a secret). Subscriptions never show their ``clientState``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared import __version__, metrics
from shared.names import GRAPH_BREAKERS, POISON_SUFFIX, WORK_QUEUES
from shared.telemetry import get_logger, redact

if TYPE_CHECKING:  # the breaker package (and tenacity, azure.core) stays off the import path of the app
    from shared.cache import CacheManager
    from shared.resilience.breaker import BreakerRegistry
    from shared.resilience.breaker_rows import BreakerSnapshot
    from shared.storage import Queues
    from shared.subscriptions.fleet import AbsentMailbox, FleetStore
    from shared.subscriptions.records import SubscriptionRecord

T = TypeVar("T")
log = get_logger("status")

SECTION_TIMEOUT_SECONDS = 5.0
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class StatusSources:
    """Where each section comes from. Getters, not instances: a section whose source cannot be built
    (Storage down at first use) fails alone, like a section whose read fails."""

    breakers: Callable[[], Awaitable[BreakerRegistry]]
    subscriptions: Callable[[], Awaitable[Sequence[SubscriptionRecord]]]
    queues: Callable[[], Awaitable[Queues]]
    cache: Callable[[], CacheManager | None]  # this process's cache if it was built (never builds it)
    graph_mode: str
    fleets: Callable[[], Awaitable[FleetStore]] | None = None


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def _breaker(snapshot: BreakerSnapshot) -> dict[str, Any]:
    return {
        "key": snapshot.key,
        "state": snapshot.state.value,
        "since": _iso(snapshot.since),
        "retry_after_seconds": None if snapshot.retry_after is None else round(snapshot.retry_after, 1),
        "calls": snapshot.calls,
        "failures": snapshot.failures,
        "trips": snapshot.trips,
        "total_trips": snapshot.total_trips,
        "storage": snapshot.storage,
    }


async def breakers_section(sources: StatusSources) -> list[dict[str, Any]]:
    """Every known breaker (whether or not this instance used it yet) as the shared state row says."""
    breakers = await sources.breakers()
    return [_breaker(await breakers.get(key).snapshot()) for key in GRAPH_BREAKERS]


async def subscriptions_section(sources: StatusSources) -> list[dict[str, Any]]:
    """Subscriptions by soonest expiry, without secrets; refreshes the expiry gauge's copy on the way."""
    records = await sources.subscriptions()
    metrics.EXPIRY.update(metrics.Expiry(r.id, r.resource, r.expiration.timestamp()) for r in records)
    now = datetime.now(UTC)
    return [
        {
            "id": r.id,
            "resource": r.resource,
            "status": r.status,
            "expiration": r.expiration.isoformat(),
            "expires_in_seconds": round((r.expiration - now).total_seconds()),
            "renewed_at": r.renewed_at.isoformat() if r.renewed_at else None,
            "last_error": redact(r.last_error)[:MAX_ERROR_CHARS] if r.last_error else None,
        }
        for r in sorted(records, key=lambda r: r.expiration)
    ]


MAX_ABSENT_SHOWN = 50


def _absent(member: AbsentMailbox) -> dict[str, Any]:
    retry_at = member.retry_at.isoformat()
    return {
        "resource": member.resource,
        "reason": redact(member.reason),
        "attempts": member.attempts,
        "retry_at": retry_at,
    }


async def fleets_section(sources: StatusSources) -> list[dict[str, Any]]:
    """Each mailbox fleet as its last reconcile left it, with the members Graph would not subscribe (the
    first ``MAX_ABSENT_SHOWN``, soonest retry first) and why; no Graph call."""
    if sources.fleets is None:
        return []
    store = await sources.fleets()
    summaries, absent = await asyncio.gather(store.summaries(), store.absent())
    waiting = sorted(absent.values(), key=lambda a: a.retry_at)[:MAX_ABSENT_SHOWN]
    return [
        {
            "fleet": s.fleet,
            "members": s.members,
            "subscribed": s.subscribed,
            "pending": s.members - s.subscribed - s.no_mailbox - s.failed,
            "no_mailbox": s.no_mailbox,
            "failed": s.failed,
            "reconciled_at": s.reconciled_at.isoformat(),
            "without_mailbox": [
                {
                    "resource": a.resource,
                    "reason": redact(a.reason),
                    "attempts": a.attempts,
                    "retry_at": a.retry_at.isoformat(),
                }
                for a in waiting
            ],
        }
        for s in sorted(summaries, key=lambda s: s.fleet)
    ]


async def _queue(queues: Queues, name: str) -> dict[str, Any]:
    queue = await queues.get(name)
    properties, oldest = await asyncio.gather(queue.get_queue_properties(), queue.peek_messages(max_messages=1))
    inserted = oldest[0].inserted_on if oldest else None
    age = (datetime.now(UTC) - inserted).total_seconds() if inserted is not None else None
    return {
        "name": name,
        "poison": name.endswith(POISON_SUFFIX),
        "depth": properties.approximate_message_count,
        "oldest_age_seconds": None if age is None else max(0, round(age)),
    }


async def queues_section(sources: StatusSources) -> list[dict[str, Any]]:
    """Approximate depth and age of the oldest message of each work queue and its poison queue."""
    names = [n for queue in WORK_QUEUES for n in (queue, f"{queue}{POISON_SUFFIX}")]
    queues = await sources.queues()
    return list(await asyncio.gather(*(_queue(queues, name) for name in names)))


def process_section(cache: CacheManager | None) -> dict[str, Any]:
    """This instance's counters and statistics (in memory, no I/O)."""
    stats = metrics.get_metric_stats()
    events = stats["events"]
    outcomes = {
        key.removeprefix("graph."): value["total"]
        for key, value in events.items()
        if key.startswith("graph.") and key != "graph.retries"
    }
    return {
        "cache": cache.stats.snapshot() if cache is not None else None,
        "graph": {
            "window_seconds": stats["window_seconds"],
            "outcomes": outcomes,
            "throttled": outcomes.get("429", 0),
            "throttled_series": events.get("graph.429", {}).get("series", []),
            "retries": events.get("graph.retries", {}).get("total", 0),
        },
        "stats": stats,
    }


async def _section(name: str, read: Callable[[], Awaitable[T]], errors: dict[str, str]) -> T | None:
    try:
        return await asyncio.wait_for(read(), SECTION_TIMEOUT_SECONDS)
    except Exception as error:  # one unreadable section must not hide the others
        reason = "timeout" if isinstance(error, TimeoutError) else getattr(error, "code", type(error).__name__)
        log.warning("status section %s unavailable: %s", name, reason)
        errors[name] = reason
        return None


async def build_status(sources: StatusSources, *, include_process: bool = True) -> dict[str, Any]:
    """The whole document; ``include_process`` False for the ops CLI, whose own process has nothing to show."""
    errors: dict[str, str] = {}
    breakers, subscriptions, queues, fleets = await asyncio.gather(
        _section("breakers", lambda: breakers_section(sources), errors),
        _section("subscriptions", lambda: subscriptions_section(sources), errors),
        _section("queues", lambda: queues_section(sources), errors),
        _section("fleets", lambda: fleets_section(sources), errors),
    )
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "version": __version__,
        "graph_mode": sources.graph_mode,
        "breakers": breakers,
        "subscriptions": subscriptions,
        "queues": queues,
        "fleets": fleets,
    }
    if include_process:
        document.update(process_section(sources.cache()))
    document["errors"] = errors
    return document


def start_telemetry(
    connection_string: str,
    subscriptions: Callable[[], Awaitable[Sequence[SubscriptionRecord]]],
    authentication_string: str | None = None,
) -> None:
    """Export to Azure Monitor (with Entra auth when ``authentication_string`` asks for it) and let the expiry
    gauge re-read the subscriptions (call from a running loop)."""
    metrics.configure_azure_monitor(connection_string, metrics.ingestion_credential(authentication_string))

    async def load() -> list[metrics.Expiry]:
        return [metrics.Expiry(r.id, r.resource, r.expiration.timestamp()) for r in await subscriptions()]

    metrics.EXPIRY.watch(load, asyncio.get_running_loop())
