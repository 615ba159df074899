"""Housekeeping that Table Storage does not do itself: delete expired cache rows and dedupe markers."""

from __future__ import annotations

from shared.http import configure_logging_once
from shared.services import CACHE, TABLES, registry
from shared.telemetry import get_logger, invocation_scope

log = get_logger("maintenance")


async def run_sweep(invocation_id: str) -> tuple[int, int]:
    """One sweep; returns (cache rows, dedupe markers) removed. A failure raises: the next tick retries."""
    from shared.events.dedupe import DedupeStore

    with invocation_scope(invocation_id, "sweep"):
        configure_logging_once()
        cache_rows = await (await registry.get(CACHE)).sweep_expired()
        markers = await DedupeStore(await registry.get(TABLES)).sweep()
        log.info("sweep: removed %d expired cache rows and %d dedupe markers", cache_rows, markers)
        return cache_rows, markers
