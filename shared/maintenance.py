"""Housekeeping that Table Storage does not do itself: delete expired cache rows and dedupe markers."""

from __future__ import annotations

import asyncio

from shared.http import configure_logging_once
from shared.services import CACHE, TABLES, registry
from shared.telemetry import get_logger, invocation_scope

log = get_logger("maintenance")


async def run_sweep(invocation_id: str) -> tuple[int, int]:
    """One sweep; returns (cache rows, dedupe markers) removed. Each part runs even if the other fails;
    a failure is raised afterwards, and the next tick retries."""
    from shared.events.dedupe import DedupeStore

    with invocation_scope(invocation_id, "sweep"):
        configure_logging_once()
        outcomes = await asyncio.gather(
            (await registry.get(CACHE)).sweep_expired(),
            DedupeStore(await registry.get(TABLES)).sweep(),
            return_exceptions=True,
        )
        log.info("sweep: removed %s expired cache rows and %s dedupe markers", *outcomes)
        cache_rows, markers = outcomes
        if isinstance(cache_rows, BaseException):
            raise cache_rows
        if isinstance(markers, BaseException):
            raise markers
        return cache_rows, markers
