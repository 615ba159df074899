"""When mirror rounds run: notifications are signals, a small queue debounces them, a lease serialises them.

- ``signal()`` (a user notification, or a catch-up that found users changed): writes ``SignaledAt`` on the
  state row and, unless a round message is already waiting, enqueues one on ``mirror-rounds`` that becomes
  visible after the debounce delay. A burst of notifications costs one round (two if the burst straddles
  it), however many instances received them.
- ``run_round()`` (that queue's trigger): takes the ``mirror:users`` lease (one round at a time across
  instances; a message that meets a running round is put back, a few seconds later, so the signal it
  carries is served by a round that starts after it), clears the waiting mark, runs the round, and if a
  signal arrived after the round started (and enqueued nothing yet), or the round paused, enqueues one
  more. Signals during a round therefore cost exactly one more round after it.
- ``tick()`` (a timer): the safety net. When no round completed for ``safety_interval`` (a notification
  was lost, or none came), it runs one, so a missed change is healed within that period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.mirror.store import MirrorStore
from shared.mirror.sync import MirrorSync, RoundResult
from shared.names import MIRROR_ROUNDS_QUEUE
from shared.storage import Queues
from shared.subscriptions.clock import Clock, utcnow
from shared.subscriptions.leases import LeaseStore
from shared.telemetry import get_logger

log = get_logger("mirror.coordinator")

LEASE_NAME = "mirror:users"
# A round message that became visible this long ago without its round starting counts as lost (a new
# signal enqueues another); until then it is assumed to be on its way to a worker.
_PICKUP_GRACE = timedelta(seconds=30)
_BUSY_RETRY_SECONDS = 5  # a round message that met a running round comes back this much later
_SIGNAL_ATTEMPTS = 3  # conditional writes a signal tries before leaving the round to the instance that won


class RoundQueue(Protocol):
    """Where round messages go (``mirror-rounds``): ``send(text, visibility_timeout)``."""

    async def send(self, text: str, delay_seconds: int) -> None: ...


class QueueRounds:
    """``RoundQueue`` on Storage queues: the message stays invisible for the debounce delay."""

    def __init__(self, queues: Queues, name: str = MIRROR_ROUNDS_QUEUE) -> None:
        self._queues = queues
        self._name = name

    async def send(self, text: str, delay_seconds: int) -> None:
        queue = await self._queues.get(self._name)
        await queue.send_message(text, visibility_timeout=delay_seconds)


@dataclass(frozen=True)
class CoordinatorConfig:
    """``debounce``: how long a signal waits for more before its round runs; ``safety_interval``: the
    longest time without a completed round before the timer runs one; ``lease``: how long a round may
    hold the lease (longer than ``SyncConfig.max_round_seconds``)."""

    debounce: timedelta = timedelta(seconds=2)
    safety_interval: timedelta = timedelta(minutes=5)
    lease: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class RoundOutcome:
    """What ``run_round`` / ``tick`` did: ``busy`` (another instance runs one), ``skipped`` (not due)."""

    result: RoundResult | None = None
    busy: bool = False
    skipped: bool = False
    followed: bool = False  # one more round was enqueued


class MirrorCoordinator:
    """Signals, debounced round messages, the lease, the safety net."""

    def __init__(
        self,
        store: MirrorStore,
        sync: MirrorSync,
        leases: LeaseStore,
        queue: RoundQueue,
        *,
        clock: Clock = utcnow,
        config: CoordinatorConfig | None = None,
    ) -> None:
        self._store = store
        self._sync = sync
        self._leases = leases
        self._queue = queue
        self._clock = clock
        self.config = config or CoordinatorConfig()

    async def signal(self) -> None:
        """The directory changed: a round will run after the debounce delay (one for a whole burst, also
        when its signals race on several instances: the waiting mark is set by a conditional write)."""
        now = self._clock()
        for _ in range(_SIGNAL_ATTEMPTS):
            state = await self._store.state()
            queued = state.get("QueuedUntil")
            if isinstance(queued, datetime) and queued > now - _PICKUP_GRACE:
                # a round message is waiting (or just became visible) and will see this signal
                await self._store.merge_state({"SignaledAt": now})
                return
            until = now + timedelta(seconds=self._debounce_seconds())
            if await self._store.swap_state(state, {"SignaledAt": now, "QueuedUntil": until}):
                await self._queue.send(json.dumps({"round": "users"}), self._debounce_seconds())
                return
        await self._store.merge_state({"SignaledAt": now})  # others kept winning: their rounds serve this one

    async def run_round(self) -> RoundOutcome:
        """Run one round now, under the lease; follow it with one more if signals came in meanwhile."""
        async with self._leases.hold(LEASE_NAME, self.config.lease) as held:
            if not held:  # the running round may have started before this signal: come back after it
                await self._enqueue(self._clock(), seconds=max(self._debounce_seconds(), _BUSY_RETRY_SECONDS))
                return RoundOutcome(busy=True)
            started = self._clock()
            # "" clears the mark (a merge leaves a None column as it was)
            await self._store.merge_state({"QueuedUntil": "", "StartedAt": started})
            result = await self._sync.run()
            state = await self._store.state()
        signaled = state.get("SignaledAt")
        waiting = isinstance(state.get("QueuedUntil"), datetime)  # a signal during the round enqueued one
        again = not waiting and (result.paused or (isinstance(signaled, datetime) and signaled >= started))
        if again:
            await self._enqueue(self._clock(), seconds=0 if result.paused else self._debounce_seconds())
        log.info(
            "mirror round: %d created, %d updated, %d deleted, %d unchanged in %d pages%s%s%s",
            result.created,
            result.updated,
            result.deleted,
            result.unchanged,
            result.pages,
            " (first fill)" if result.baseline else "",
            " (full resync)" if result.resynced else "",
            "; one more round follows" if again else "",
        )
        return RoundOutcome(result, followed=again)

    async def tick(self) -> RoundOutcome:
        """The safety net: run a round when none completed within ``safety_interval``."""
        state = await self._store.state()
        completed = state.get("CompletedAt")
        if isinstance(completed, datetime) and self._clock() - completed < self.config.safety_interval:
            return RoundOutcome(skipped=True)
        return await self.run_round()

    def _debounce_seconds(self) -> int:
        return max(0, round(self.config.debounce.total_seconds()))

    async def _enqueue(self, now: datetime, *, seconds: int | None = None) -> None:
        seconds = self._debounce_seconds() if seconds is None else seconds
        await self._store.merge_state({"QueuedUntil": now + timedelta(seconds=seconds)})
        await self._queue.send(json.dumps({"round": "users"}), seconds)
