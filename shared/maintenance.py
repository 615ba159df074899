"""Housekeeping that Table Storage does not do itself: delete expired cache rows, old dedupe markers and the
directory mirror's old tombstones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from shared.telemetry import get_logger

log = get_logger("maintenance")


async def run_sweep(sweepers: Mapping[str, Callable[[], Awaitable[int]]]) -> None:
    """One sweep; each sweeper (named by what it removes) runs even if another fails; a failure is raised
    afterwards, and the next tick retries."""
    outcomes = await asyncio.gather(*(sweep() for sweep in sweepers.values()), return_exceptions=True)
    log.info("sweep: removed %s", ", ".join(f"{n} {what}" for what, n in zip(sweepers, outcomes, strict=True)))
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
