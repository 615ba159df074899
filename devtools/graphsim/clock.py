"""The simulator clock: real time plus an offset tests can advance.

Every Graph timestamp and every expiry check reads this clock, so a test can jump past
a subscription's expiration without waiting.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta


class SimClock:
    """Wall-clock time shifted by a test-controlled offset."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current simulated time (timezone-aware UTC)."""
        return datetime.now(UTC) + self._offset

    @property
    def offset_s(self) -> float:
        """How far the simulated time runs ahead of real time, in seconds."""
        return self._offset.total_seconds()

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward (never backward: Graph time does not rewind)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def reset(self) -> None:
        """Back to real time."""
        self._offset = timedelta()


def graph_time(moment: datetime) -> str:
    """Format as Outlook does for item timestamps: seconds precision with ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_time_precise(moment: datetime) -> str:
    """Format as Graph does for subscription expirations: seven fractional digits and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp as clients send it (``Z`` or offset, up to 7 decimals).

    A timestamp without an offset is taken as UTC, as Graph does.
    """
    cleaned = _FRACTION.sub(r"\1", text.strip())
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
