"""Health: can this instance reach what it needs? Each probe is bounded so the check itself stays fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from shared import __version__
from shared.telemetry import get_logger

log = get_logger("health")


async def first_item(listing: AsyncIterable[Any]) -> None:
    """Read the first entry of a listing (one request). Listing tables or queues needs only the data roles the
    app's identity has (``tables/read``, ``queues/read``); reading service properties needs a management-plane
    action (``tableServices/read``) that those roles lack, so on identity-based storage that probe failed."""
    async for _ in listing:
        break


async def _probe(name: str, call: Callable[[], Awaitable[Any]], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(call(), timeout)
    except Exception as error:  # any failure means "not healthy"; the type is enough to diagnose
        reason = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        log.warning("health probe %s failed: %s", name, reason)
        return {"ok": False, "error": reason, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def check_health(
    table_probe: Callable[[], Awaitable[Any]],
    queue_probe: Callable[[], Awaitable[Any]],
    *,
    timeout: float,
    graph_mode: str,
) -> tuple[int, dict[str, Any]]:
    """Probe Table and Queue storage concurrently (the first entry of a table and a queue listing); 200 when
    both answer, else 503."""
    table_check, queue_check = await asyncio.gather(
        _probe("table", table_probe, timeout),
        _probe("queue", queue_probe, timeout),
    )
    healthy = table_check["ok"] and queue_check["ok"]
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "graph_mode": graph_mode,
        "checks": {"table_storage": table_check, "queue_storage": queue_check},
    }
    return (200 if healthy else 503), body
