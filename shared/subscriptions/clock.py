"""The clock every subscription component takes: injectable, so renewal can run on simulated time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real time, timezone-aware (the production clock)."""
    return datetime.now(UTC)
