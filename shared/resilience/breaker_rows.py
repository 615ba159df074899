"""The rows a breaker keeps in its ``BreakerStore``, and how they read and write.

Rows per breaker (partition = ``safe_key(key)``):

- ``state``: state, generation, since, open_until, trips. Every change is a conditional write on the
  ETag that was read; a conflict re-reads the row and runs the decision again, so two instances racing
  to trip, or an operator isolating during a probe, cannot lose an update. ``half_open`` is not stored:
  it is ``open`` whose ``open_until`` has passed. Each change bumps ``generation``, which scopes counts and
  leases to the period they belong to (counts restart after every close).
- ``lease``: the half-open probe slot (``breaker_probe``): holder, generation, expiry and a random token.
- ``<key>~shards`` partition, one row per instance: that instance's outcome counts per time bucket over
  the window, the time of its last success and its trailing failures. Each instance writes only its own
  row (replace with its running totals, so a repeated write cannot double-count); trip evaluation reads
  the partition and sums the window.

A malformed row (hand-edited, foreign) never breaks a breaker: a state row reads as closed, a shard
counts for nothing, a lease is as good as expired.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from shared.resilience.breaker_policy import BreakerPolicy
from shared.resilience.breaker_store import Row, Values

log = logging.getLogger(__name__)

STATE_ROW = "state"
LEASE_ROW = "lease"


def shards_partition(partition: str) -> str:
    """The partition of a breaker's per-instance count rows."""
    return f"{partition}~shards"


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a status page shows for one breaker. ``storage`` is ``unavailable`` while on the fallback."""

    key: str
    state: State
    since: float
    retry_after: float | None
    calls: int
    failures: int
    trips: int
    total_trips: int
    storage: str = "ok"


@dataclass(frozen=True)
class StateRow:
    """The state row as read (``etag`` None: the row does not exist yet, i.e. closed since forever)."""

    state: State
    generation: int = 0
    since: float = 0.0
    open_until: float = 0.0
    trips: int = 0
    total_trips: int = 0
    etag: str | None = None

    @classmethod
    def from_row(cls, row: Row | None) -> StateRow:
        if row is None:
            return cls(State.CLOSED)
        v = row.values
        try:
            return cls(
                State(str(v["State"])),
                int(v["Generation"]),
                float(v["Since"]),
                float(v["OpenUntil"]),
                int(v["Trips"]),
                int(v["TotalTrips"]),
                row.etag,
            )
        except (KeyError, ValueError, TypeError):  # hand-edited or foreign row: the next decision replaces it
            log.error("breaker state row is malformed, read as closed: %r", dict(v))
            return cls(State.CLOSED, etag=row.etag)

    def to_values(self) -> Values:
        return {
            "State": self.state.value,
            "Generation": self.generation,
            "Since": self.since,
            "OpenUntil": self.open_until,
            "Trips": self.trips,
            "TotalTrips": self.total_trips,
        }

    def shown(self, now: float) -> State:
        return State.HALF_OPEN if self.state is State.OPEN and now >= self.open_until else self.state

    def opened(self, now: float, policy: BreakerPolicy) -> StateRow:
        """The next period: open, one more trip in a row, for as long as the policy says."""
        trips = self.trips + 1
        return StateRow(
            State.OPEN, self.generation + 1, now, now + policy.open_seconds(trips), trips, self.total_trips + 1
        )

    def closed(self, now: float) -> StateRow:
        """The next period: closed, the open-duration escalation restarted."""
        return StateRow(State.CLOSED, self.generation + 1, now, 0.0, 0, self.total_trips)


@dataclass
class ShardCounts:
    """This instance's outcomes in one generation, flushed to its shard row."""

    generation: int
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> [successes, failures]
    last_success_at: float = 0.0
    streak: list[float] = field(default_factory=list)  # times of failures since the last local success
    dirty: bool = False
    unevaluated: bool = False

    def to_values(self, now: float) -> Values:
        return {
            "Generation": self.generation,
            "Buckets": json.dumps(sorted([b, s, f] for b, (s, f) in self.buckets.items())),
            "LastSuccessAt": self.last_success_at,
            "Streak": json.dumps(self.streak),
            "UpdatedAt": now,
        }


@dataclass(frozen=True)
class Totals:
    calls: int
    failures: int
    streak: int


def window_totals(shards: Iterable[Values], generation: int, now: float, policy: BreakerPolicy) -> Totals:
    """Window counts over shard rows of ``generation``; the streak counts failures after the latest
    success of any instance (and within the window)."""
    horizon = now - policy.window_seconds
    first_bucket = int(horizon // policy.bucket_seconds) + 1
    calls = failures = 0
    last_success = horizon
    failure_times: list[float] = []
    for shard in shards:
        try:
            if int(shard["Generation"]) != generation:
                continue
            buckets = [(int(b), int(ok), int(failed)) for b, ok, failed in json.loads(str(shard["Buckets"]))]
            streak = [float(t) for t in json.loads(str(shard["Streak"]))]
            succeeded_at = float(shard["LastSuccessAt"])
        except (KeyError, ValueError, TypeError):
            continue  # a malformed row counts for nothing rather than breaking every evaluation
        for bucket, ok, failed in buckets:
            if bucket >= first_bucket:
                calls += ok + failed
                failures += failed
        last_success = max(last_success, succeeded_at)
        failure_times.extend(streak)
    return Totals(calls, failures, sum(1 for t in failure_times if t > last_success))


def lease_values(holder: str, generation: int, token: str, expires: float) -> Values:
    return {"Holder": holder, "Generation": generation, "ExpiresAt": expires, "Probe": token}


def lease_hold(row: Row) -> tuple[int, float]:
    """(generation, expiry) of a lease row; a malformed one reads as long expired."""
    try:
        return int(row.values["Generation"]), float(row.values["ExpiresAt"])
    except (KeyError, ValueError, TypeError):
        return -1, 0.0
