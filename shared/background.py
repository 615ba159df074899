"""Background work yields to acknowledgements: an admission gate steered by the event loop's lag.

Queue processing and webhook POSTs share one event loop per worker process. Processing is throughput
work (a backlog can wait a second), a POST is latency work (Graph counts a delivery as slow after 3 s and
drops notifications when too many are slow). Left alone, the host hands the processor up to
``batchSize + newBatchThreshold`` messages at once, their callbacks fill the loop, and every POST waits in
line behind them (measured: loop lag p99 ~470 ms, half the POSTs answered 503 at 1,000 notifications/s).

So each unit of background work (a ``graph-notifications`` message: its parse and its batched dispatch,
taken by the batch processor) holds a slot while it runs, and the number of slots follows two signals of
acknowledgement health, additive-increase / multiplicative-decrease as TCP does with its congestion window:

- the loop's lag (``shared.loop_lag``, every 50 ms): over ``target_lag`` means our own callbacks crowd the
  loop; under it opens one more slot (up to ``max_slots``);
- each webhook accept's duration (validate + persist): over ``target_ack`` means the acknowledgement path
  is slow, whether from the loop or from Storage being busy with our own processing (measured locally:
  a loop with little lag, yet 2 s persists, because processing's Table calls queued ahead of the webhook's).

Either one over its target halves the slots, at most once per ``cooldown`` (one burst of slow POSTs is one
signal, not twenty), down to ``min_slots``; slots reopen one per good lag sample, but only once no signal
was slow for ``hold`` (otherwise twenty good samples a second outvote the slow POSTs, measured: the
processor kept 40% of the loop and acks stayed at 2-5x their unloaded time). Work already admitted finishes;
only new admissions wait. A new process starts with one slot and opens up as samples come in (slow start, as
TCP does): measured, starting wide open let a fresh instance admit all it was offered into a burst of POSTs,
and their Table calls held the first seconds' acknowledgements at 2-3 s. An idle app opens every slot within
``max_slots`` samples (under a second), so a backlog alone is processed at full speed.

Acknowledgements alone must not starve processing either: measured, with acks steered to 100 ms the
processor kept ~80% of a 500/s intake, the backlog grew without bound and events reached consumers 15-70 s
after their notifications. So a third signal is the processing delay: how long after its receipt by the
webhook a message is admitted (``on_delay``). Over ``target_delay``, processing is *behind*: for ``hold``
after such a sample the ack and lag targets are relaxed to their ceilings (``behind_factor`` times the targets,
still far inside Graph's 3 s) and slots open on every good lag sample. The gate never closes below one slot
(``min_slots``), so admitted messages keep reporting their delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class GateConfig:
    """The targets the gate steers to (seconds) and its bounds; defaults suit a 3 s acknowledgement budget."""

    target_lag: float = 0.02
    target_ack: float = 0.1
    target_delay: float = 1.0  # receipt to admission; later means processing falls behind the intake
    behind_factor: float = 2.5  # while behind, acks and lag may reach this many times their targets
    cooldown: float = 0.1  # at most one halving per cooldown
    hold: float = 1.0  # no slot opens within this long after a slow signal
    min_slots: int = 1  # overloaded, one message at a time: processing never stops, delays keep being seen
    max_slots: int = 16  # messages in flight when all is well; the host offers batchSize + newBatchThreshold

    def __post_init__(self) -> None:
        if not 0 <= self.min_slots <= self.max_slots or self.max_slots < 1:
            raise ValueError("need 0 <= min_slots <= max_slots and max_slots >= 1")
        if self.behind_factor < 1:
            raise ValueError("behind_factor relaxes the targets: it must be >= 1")


class BackgroundGate:
    """``async with gate.slot():`` around one unit of background work; ``on_lag`` feeds it lag samples."""

    def __init__(self, config: GateConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or GateConfig()
        self.limit = max(1, self.config.min_slots)  # slow start: a fresh process learns what the loop can take
        self.in_use = 0
        self._clock = clock
        self._last_decrease = float("-inf")
        self._last_slow = float("-inf")
        self._last_ack = float("-inf")
        self._last_behind = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def behind(self) -> bool:
        """A message admitted within ``hold`` waited longer than ``target_delay``: the backlog is growing."""
        return self._clock() - self._last_behind < self.config.hold

    def _limit_of(self, target: float) -> float:
        return target * self.config.behind_factor if self.behind else target

    def on_lag(self, lag: float) -> None:
        """One loop-lag sample (seconds): halve the slots when over target, else open one more unless
        either signal was slow within ``hold`` (while behind, slow signals do not hold the slots back)."""
        if lag > self._limit_of(self.config.target_lag):
            self._decrease()
        elif self.behind or self._clock() - self._last_slow >= self.config.hold:
            self.limit = min(self.config.max_slots, self.limit + 1)
            self._wake()

    def on_ack(self, seconds: float) -> None:
        """One webhook accept's duration: halve the slots when over target (recovery comes from ``on_lag``)."""
        self._last_ack = self._clock()
        if seconds > self._limit_of(self.config.target_ack):
            self._decrease()

    def on_delay(self, seconds: float) -> None:
        """How long after its receipt a message was admitted: over ``target_delay`` marks the gate behind."""
        if seconds > self.config.target_delay:
            self._last_behind = self._clock()

    @property
    def contended(self) -> bool:
        """Acknowledgements are being made now (one within ``hold``): background work should come in small
        steps and give its slot back between them (``yield_slot``)."""
        return self._clock() - self._last_ack < self.config.hold

    def _decrease(self) -> None:
        now = self._clock()
        self._last_slow = now
        if now - self._last_decrease >= self.config.cooldown:
            self._last_decrease = now
            self.limit = max(self.config.min_slots, self.limit // 2)

    @property
    def waiting(self) -> int:
        return len(self._waiters)  # a waiter leaves the queue when it is woken or cancelled

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot (first come, first served), hold it for the block."""
        await self._acquire()
        try:
            yield
        finally:
            self.in_use -= 1
            self._wake()

    async def yield_slot(self) -> None:
        """Inside ``slot()``: give the slot back and queue for one again when the gate has closed below the
        slots in use or others wait, so what waits (and the acknowledgements the gate protects) goes first."""
        if self.in_use <= self.limit and not self.waiting:
            return
        self.in_use -= 1
        self._wake()
        await self._acquire()

    async def _acquire(self) -> None:
        if self.in_use < self.limit and not self.waiting:
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_use -= 1  # woken and given the slot, but cancelled before using it
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)  # cancelled while queued (rare: O(n) is fine)
            raise

    def _wake(self) -> None:
        """Hand free slots to the oldest live waiters (the slot is counted as taken for them)."""
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if waiter.done() or waiter.get_loop().is_closed():
                continue
            self.in_use += 1
            waiter.set_result(None)
