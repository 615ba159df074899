"""Housekeeping that Table Storage does not do itself: delete expired cache rows and dedupe markers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.telemetry import get_logger

log = get_logger("maintenance")


async def run_sweep(sweep_cache: Callable[[], Awaitable[int]], sweep_dedupe: Callable[[], Awaitable[int]]) -> None:
    """One sweep of expired cache rows and old dedupe markers. Each part runs even if the other fails; a
    failure is raised afterwards, and the next tick retries."""
    outcomes = await asyncio.gather(sweep_cache(), sweep_dedupe(), return_exceptions=True)
    log.info("sweep: removed %s expired cache rows and %s dedupe markers", *outcomes)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
