"""The half-open probe lease: across all instances, exactly one call probes a breaker whose open period is over.

The lease is short (``probe_lease_seconds``) and its holder renews it every third of that while the probe
runs (an ETag-conditional replace), so a slow live probe keeps it however long it takes (up to
``probe_timeout_seconds``, after which the breaker cancels it as a failure), while a holder that died stops
renewing and blocks the others for at most one lease period. Each lease carries a random token: a renewal
that conflicts re-reads the row and, if the token is still ours (our earlier write landed but its answer
was lost), carries on; any other token means the lease lapsed and was taken over. The holder renews once
more just before it writes the decision; a probe that lost its lease (renewals failed for a whole lease
period: store unreachable from it, process paused) drops its outcome and the new holder decides. Should
two probes still race to decide (a holder paused between that last renewal and the state write), the
state row settles it (see ``breaker``). A probe that never reports back (crash, cancellation) simply lets
its lease expire.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.errors import CircuitOpenError
from shared.resilience.breaker_policy import BreakerPolicy
from shared.resilience.breaker_rows import LEASE_ROW, lease_hold, lease_values
from shared.resilience.breaker_store import BreakerStore, StoreConflict, StoreUnavailable

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 5
"""Conditional writes a decision tries before giving up (each conflict re-reads and decides again)."""


@dataclass
class Lease:
    """The probe lease one call holds, as of its latest write."""

    generation: int
    token: str  # tells our own writes from a takeover's when a renewal conflicts
    etag: str
    lost: bool = False


class ProbeLeases:
    """One breaker's lease row, and what this instance knows of the probe running now."""

    def __init__(
        self,
        key: str,
        partition: str,
        store: BreakerStore,
        policy: BreakerPolicy,
        *,
        instance_id: str,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._key = key
        self._pk = partition
        self._store = store
        self._policy = policy
        self._instance = instance_id
        self._sleep = sleep  # paces the renewals
        self._busy: tuple[int, float] = (-1, 0.0)  # (generation, until) of a probe we know runs

    def forget(self) -> None:
        """Let the next caller try for the lease at once (the probe proved nothing, or the store was lost)."""
        self._busy = (-1, 0.0)

    async def take(self, generation: int, now: float) -> Lease:
        """The lease for probing ``generation``; ``CircuitOpenError`` while another caller holds it."""
        busy_for, until = self._busy
        if busy_for == generation and now < until:
            raise CircuitOpenError(self._key, retry_after=until - now)
        # Claim locally first so this instance's concurrent callers do not all race for the lease row.
        self._busy = (generation, now + self._policy.probe_lease_seconds)
        lease, until = await self._acquire(generation, now)
        if lease is None:
            self._busy = (generation, until)
            raise CircuitOpenError(self._key, retry_after=max(until - now, 0.0))
        log.info("breaker %s: half-open, this instance probes", self._key)
        return lease

    async def _acquire(self, generation: int, now: float) -> tuple[Lease | None, float]:
        """The lease and its expiry if we took it, else (None, expiry of the holder's lease)."""
        expires = now + self._policy.probe_lease_seconds
        token = uuid.uuid4().hex
        values = lease_values(self._instance, generation, token, expires)
        for _ in range(WRITE_ATTEMPTS):
            try:
                etag = await self._store.insert(self._pk, LEASE_ROW, values)
                return Lease(generation, token, etag), expires
            except StoreConflict:
                current = await self._store.read(self._pk, LEASE_ROW)
            if current is None:
                continue  # released in between: try the insert again
            held_for, held_until = lease_hold(current)
            if held_for == generation and now < held_until:
                return None, held_until
            try:  # expired, or left over from an earlier open period: take it over
                etag = await self._store.replace(self._pk, LEASE_ROW, values, current.etag)
                return Lease(generation, token, etag), expires
            except StoreConflict:
                continue  # someone else took it over first; the next read says who
        return None, expires

    async def keep(self, lease: Lease) -> None:
        """Renew the lease every third of its length until cancelled or until it turns out to be lost."""
        while True:
            await self._sleep(self._policy.probe_lease_seconds / 3)
            try:
                if not await self.renew(lease):
                    return
            except StoreUnavailable as error:  # it may still be ours: try again at the next beat
                log.warning("breaker %s: could not renew the probe lease: %s", self._key, error)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by a full period if it is still ours; False (and ``lease.lost``) if it was
        taken over. Raises ``StoreUnavailable``."""
        for _ in range(WRITE_ATTEMPTS):
            if lease.lost:
                return False
            expires = self._store.now() + self._policy.probe_lease_seconds
            values = lease_values(self._instance, lease.generation, lease.token, expires)
            try:
                lease.etag = await self._store.replace(self._pk, LEASE_ROW, values, lease.etag)
            except StoreConflict:
                current = await self._store.read(self._pk, LEASE_ROW)
                if current is None or current.values.get("Probe") != lease.token:
                    lease.lost = True
                    self.forget()
                    log.warning("breaker %s: the probe lost its lease (not renewed in time)", self._key)
                    return False
                lease.etag = current.etag  # an earlier write of ours landed though its answer was lost
                continue
            self._busy = (lease.generation, expires)
            return True
        lease.lost = True  # never confirmed: act as if it were gone
        return False

    async def release(self, lease: Lease) -> None:
        """Give the lease back without a decision, so the next caller probes at once."""
        self.forget()
        if not lease.lost:
            await self._store.delete(self._pk, LEASE_ROW, lease.etag)
