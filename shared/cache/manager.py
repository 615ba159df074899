"""``get_or_set``: the two tiers, single-flight, refresh leases, stale-while-revalidate and invalidation.

How a call is answered (``Freshness`` names the TTLs, ``CachePolicy`` the rest):

1. L1 (this process) holds a valid entry → ``hit-l1``. L2 (Table) holds one → ``hit-l2``, copied to L1.
   Valid means: not past ``hard_ttl``, and written under the group's current generation.
2. Past ``soft_ttl`` but within ``hard_ttl`` the value is returned marked ``stale`` (not as a hit: the
   caller learns the truth about freshness and can say so, e.g. with an ``Age`` header) and one
   background refresh starts, guarded by the lease so one instance refreshes, not all of them.
3. Otherwise the call is a miss. Concurrent misses for a key in one process share one load
   (single-flight). Across instances the load takes the key's refresh lease first; a load that finds
   the lease taken polls L2 for up to ``lease_wait`` for the holder's value, then serves a stale value
   if one is within ``max_staleness``, else fetches anyway: a stuck or crashed holder must not turn
   into an outage, and the breaker below the fetch still protects the upstream.
4. A fetch failing with ``TransientError`` (throttled, unavailable, circuit open) is answered with a
   value up to ``max_staleness`` old, marked ``stale``, when there is one; else the error propagates.
   ``NotFoundError`` is cached for ``negative_ttl`` and re-raised from the cache without fetching.
   Other errors propagate and are not cached.

Invalidation: ``invalidate(key)`` replaces the row with a tombstone, so a fetch that started before it
cannot write its (now outdated) value afterwards: writes are conditional on the row's ETag.
``invalidate_group(group)`` gives the group a new generation (a random token, written with one upsert,
so concurrent invalidations never conflict); every entry carries the generation it was fetched under
and reads as a miss once it differs. This process sees its own invalidations at once; other processes
within ``generation_ttl`` (groups) and ``l1_ttl`` (keys), both 1 s by default.

Storage failures never fail a call: the cache counts them, skips Table Storage for ``storage_cooldown``
and answers from L1 and the upstream. Invalidation is the exception: losing one silently would serve
outdated data until the TTL, so it raises ``UnavailableError`` and the caller (a queue trigger) retries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.cache.background import KeyedTasks
from shared.cache.codec import ValueTooLargeError, content_hash, decode_json, encode_json, pack
from shared.cache.degradation import StorageDegradation
from shared.cache.entry import Entry
from shared.cache.generations import Generations
from shared.cache.keys import CacheKey
from shared.cache.leases import Leases
from shared.cache.listener import CacheListener, SilentListener
from shared.cache.memory import MemoryTier
from shared.cache.policy import CachePolicy, Freshness
from shared.cache.result import CacheResult, Source, is_stale, negative_entry, not_found, result_of
from shared.cache.singleflight import SingleFlight
from shared.cache.stats import CacheStats
from shared.cache.table import DEFAULT_TABLE, StoredRow, TableTier
from shared.errors import NotFoundError, StorageUnavailableError, TransientError
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from shared.storage import Tables

T = TypeVar("T")
# What a miss gets from the lease: the lease and the row as it is now, another's value, or nothing.
Waited = tuple[str, StoredRow | None] | CacheResult[Any] | Entry | None

log = get_logger("cache")


class CacheManager:
    """The cache of one process. Build once per process (``from_tables``) and share it."""

    def __init__(
        self,
        l2: TableTier,
        policy: CachePolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        listener: CacheListener | None = None,
    ) -> None:
        self.policy = policy or CachePolicy()
        self.stats = CacheStats()
        self._l2 = l2
        self._clock = clock
        self._listener: CacheListener = listener or SilentListener()
        self._storage = StorageDegradation(self.policy.storage_cooldown, self.stats, clock)
        self._l1: MemoryTier[CacheKey, Entry] = MemoryTier(
            max_entries=self.policy.l1_max_entries,
            max_bytes=self.policy.l1_max_bytes,
            ttl=self.policy.l1_ttl,
            clock=clock,
            size_of=lambda entry: entry.size,
        )
        self._generations = Generations(
            l2, self._storage, max_entries=self.policy.l1_max_entries, ttl=self.policy.generation_ttl, clock=clock
        )
        self._leases = Leases(l2, self._storage, self.policy, self.stats)
        self._loads: SingleFlight[CacheResult[Any] | Entry] = SingleFlight()
        self._refreshes = KeyedTasks()
        self._epoch = 0  # bumped by every local invalidation; loads that span one do not fill L1

    @classmethod
    def from_tables(
        cls,
        tables: Tables,
        policy: CachePolicy | None = None,
        *,
        table: str = DEFAULT_TABLE,
        clock: Callable[[], float] = time.time,
        listener: CacheListener | None = None,
    ) -> CacheManager:
        """The usual construction: the cache table comes from ``Tables`` (created on first use)."""
        policy = policy or CachePolicy()
        l2 = TableTier.from_tables(tables, clock=clock, timeout=policy.storage_timeout, table=table)
        return cls(l2, policy, clock=clock, listener=listener)

    # --- reading --------------------------------------------------------------------------------------

    async def get_or_set(
        self, key: CacheKey, fetch: Callable[[], Awaitable[T]], *, freshness: Freshness | None = None
    ) -> CacheResult[T]:
        """The cached value of ``key``, or ``fetch()``'s result, cached.

        ``fetch`` must return JSON-compatible data (dicts, lists, str, numbers, bool, None; anything
        else raises ``TypeError``, a programming error); every source, a miss included, returns what
        ``json.loads`` makes of it, so results never differ in type by source. ``fetch`` may also be
        called later by a background refresh, so it must not depend on the calling request staying
        alive. Raises what ``fetch`` raised when no cached value may stand in (see module doc).
        """
        fresh = freshness or self.policy.freshness_for(key.namespace)
        generation = await self._generations.current(key.group)
        entry = self._l1.get(key)
        outcome: CacheResult[Any] | Entry | None = None
        if entry is not None and entry.generation == generation:
            outcome = self._answer(entry, fresh, "hit-l1")
            if is_stale(outcome):
                self._refresh_in_background(key, fetch, fresh, generation)
        try:
            if outcome is None:
                flight = (key, generation, self._epoch)
                with self._listener.loading(key.namespace):
                    outcome = await self._loads.run(flight, lambda: self._load(key, fetch, fresh, generation))
        except Exception:
            self.stats.failures += 1
            self._listener.answered("failure")
            raise
        if isinstance(outcome, Entry):
            self.stats.negative_hits += 1
            self._listener.answered("negative-hit")
            raise not_found(outcome)
        self._count(outcome.source)
        return cast(CacheResult[T], outcome)

    def _answer(self, entry: Entry, fresh: Freshness, source: Source) -> CacheResult[Any] | Entry | None:
        """What a valid-generation entry can answer: a fresh or stale result (the caller then starts a
        refresh), a negative entry to raise, or None when it is too old and the caller must load."""
        now = self._clock()
        if now >= entry.expires_at:
            return None
        if entry.negative:
            return entry
        age = entry.age(now)
        if age < fresh.soft_ttl:
            return result_of(entry, source, now)
        if age < fresh.hard_ttl:
            return result_of(entry, "stale", now)
        return None

    async def _load(
        self, key: CacheKey, fetch: Callable[[], Awaitable[Any]], fresh: Freshness, generation: str
    ) -> CacheResult[Any] | Entry:
        """A miss in L1: try L2, then take the lease (or wait for its holder), then fetch."""
        use_l2 = self._storage.usable()
        row: StoredRow | None = None
        if use_l2:
            try:
                row = await self._l2.read(key)
            except StorageUnavailableError as exc:
                self._storage.failed(exc)
                use_l2 = False
        l2_entry = self._valid(row, generation)
        if l2_entry is not None:
            answer = self._answer(l2_entry, fresh, "hit-l2")
            if answer is not None:
                self._l1.put(key, l2_entry)
                if is_stale(answer):
                    self._refresh_in_background(key, fetch, fresh, generation)
                return answer
        fallback = self._fallback(key, generation, l2_entry, fresh)

        lease: str | None = None
        if use_l2:
            try:
                waited: Waited = await self._leases.take_or_wait(
                    key, lambda r: self._fresh_answer(key, r, generation, fresh)
                )
            except StorageUnavailableError as exc:
                self._storage.failed(exc)
                use_l2 = False
            else:
                if isinstance(waited, tuple):
                    lease, row = waited
                elif waited is not None:
                    return waited
                elif fallback is not None:
                    return result_of(fallback, "stale", self._clock())
        try:
            return await self._fetch_and_store(
                key, fetch, fresh, generation, etag=row.etag if row else None, use_l2=use_l2
            )
        except TransientError:
            fallback = self._fallback(key, generation, l2_entry, fresh)
            if fallback is None:
                raise
            return result_of(fallback, "stale", self._clock())
        finally:
            if lease is not None:
                await self._leases.release(key, lease)

    def _fresh_answer(
        self, key: CacheKey, row: StoredRow | None, generation: str, fresh: Freshness
    ) -> CacheResult[Any] | Entry | None:
        """A row's answer if it is fresh (or a live negative entry); a stale one does not end a wait."""
        entry = self._valid(row, generation)
        if entry is None or (not entry.negative and entry.age(self._clock()) >= fresh.soft_ttl):
            return None
        answer = self._answer(entry, fresh, "hit-l2")
        if answer is not None:
            self._l1.put(key, entry)
        return answer

    async def _fetch_and_store(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[Any]],
        fresh: Freshness,
        generation: str,
        *,
        etag: str | None,
        use_l2: bool,
    ) -> CacheResult[Any]:
        """Call upstream once; cache the value, or the ``NotFoundError`` it raised."""
        epoch = self._epoch
        fetched_at = self._clock()
        self.stats.fetches += 1
        try:
            value = await fetch()
        except NotFoundError as exc:
            negative = negative_entry(exc, fetched_at, fetched_at + fresh.negative_ttl, generation)
            await self._store(key, negative, etag=etag, use_l2=use_l2, epoch=epoch)
            raise
        except Exception:
            self.stats.fetch_errors += 1
            raise
        try:
            payload = encode_json(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cache {key.namespace}: fetch returned a value JSON cannot carry: {exc}") from exc
        entry = Entry(payload, content_hash(payload), fetched_at, fetched_at + fresh.max_staleness, generation)
        await self._store(key, entry, etag=etag, use_l2=use_l2, epoch=epoch)
        source: Source = "miss" if use_l2 and self._storage.usable() else "bypass"
        return CacheResult(decode_json(payload), source, 0.0, entry.content_hash)

    async def _store(self, key: CacheKey, entry: Entry, *, etag: str | None, use_l2: bool, epoch: int) -> None:
        """Write L2 (conditionally) then L1; a value that cannot be stored is simply not cached."""
        try:
            packed = pack(entry.payload, compress_min_bytes=self.policy.compress_min_bytes)
        except ValueTooLargeError as exc:
            self.stats.refused_too_large += 1
            log.warning("cache %s: value not cached: %s", key.namespace, exc)
            return
        written = True
        if use_l2 and self._storage.usable():
            try:
                written = await self._l2.write(key, entry, packed, etag=etag)
            except StorageUnavailableError as exc:
                self._storage.failed(exc)
            if not written:
                self.stats.write_conflicts += 1
        if written and epoch == self._epoch:
            self._l1.put(key, entry)

    # --- writing from an outside source ---------------------------------------------------------------

    async def put_if(
        self, key: CacheKey, value: Any, replaces: Callable[[Any | None], bool], *, likely_new: bool = False
    ) -> bool:
        """Cache ``value`` (data a notification brought) if ``replaces(current)`` says it supersedes what the
        row holds now (``current`` is None when there is no value, whatever its generation); True if written.

        The row's value is compared even when an invalidation made it unreadable: a redelivered older
        notification must not write over newer data. The write is conditional on the row read, so a Graph
        fetch that raced it cannot overwrite it either; a conflict reads again (three tries). Best effort:
        a storage failure writes nothing (the caller's invalidation already made the cache correct).
        ``likely_new`` (a created item) tries an insert before reading: one Table call instead of two.
        """
        if not self._storage.usable():
            return False
        fresh = self.policy.freshness_for(key.namespace)
        try:
            payload = encode_json(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cache {key.namespace}: a value JSON cannot carry: {exc}") from exc
        try:
            for attempt in range(3):
                row = None if likely_new and attempt == 0 else await self._l2.read(key)
                current = row.entry if row is not None else None
                known = None if current is None or current.negative else decode_json(current.payload)
                if not replaces(known):
                    return False
                generation = await self._generations.current(key.group)
                now = self._clock()
                entry = Entry(payload, content_hash(payload), now, now + fresh.max_staleness, generation)
                packed = pack(payload, compress_min_bytes=self.policy.compress_min_bytes)
                if await self._l2.write(key, entry, packed, etag=row.etag if row is not None else None):
                    self._epoch += 1  # a load that started before this write must not fill L1 after it
                    self._l1.put(key, entry)
                    return True
                self.stats.write_conflicts += 1
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
        except ValueTooLargeError:
            self.stats.refused_too_large += 1
        return False

    # --- background refresh ---------------------------------------------------------------------------

    def _refresh_in_background(
        self, key: CacheKey, fetch: Callable[[], Awaitable[Any]], fresh: Freshness, generation: str
    ) -> None:
        """Start one refresh of ``key`` in this process (none if one is running); its failure is logged."""
        name = f"cache-refresh:{key.namespace}"
        if self._refreshes.start(key, lambda: self._refresh(key, fetch, fresh, generation), name=name):
            self.stats.refreshes += 1

    async def _refresh(
        self, key: CacheKey, fetch: Callable[[], Awaitable[Any]], fresh: Freshness, generation: str
    ) -> None:
        lease: str | None = None
        try:
            use_l2 = self._storage.usable()
            etag: str | None = None
            if use_l2:
                row = await self._l2.read(key)
                if self._fresh_answer(key, row, generation, fresh) is not None:
                    return  # another instance refreshed it already
                lease = await self._leases.take(key)
                if lease is None:
                    return  # another instance is refreshing it
                etag = row.etag if row else None
            await self._fetch_and_store(key, fetch, fresh, generation, etag=etag, use_l2=use_l2)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
        except NotFoundError:
            pass  # cached as a negative entry: the next read raises it
        except Exception as exc:
            self.stats.refresh_errors += 1
            log.warning("cache %s: background refresh failed: %s: %s", key.namespace, type(exc).__name__, exc)
        finally:
            if lease is not None:
                await self._leases.release(key, lease)

    async def drain(self) -> None:
        """Wait for every background refresh started so far (tests; graceful shutdown)."""
        await self._refreshes.drain()

    async def aclose(self) -> None:
        """Cancel background refreshes: the process is going away, the next one will refresh."""
        await self._refreshes.cancel()

    # --- invalidation and maintenance -----------------------------------------------------------------

    async def invalidate(self, key: CacheKey) -> None:
        """Drop one value: here at once, on other instances within ``l1_ttl``.

        Raises ``StorageUnavailableError`` when Table Storage cannot record it (retry the invalidation)."""
        self._epoch += 1
        self._l1.pop(key)
        try:
            await self._l2.tombstone(key, until=self._clock() + self.policy.lease_duration)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
            raise StorageUnavailableError("cache invalidation could not be stored") from exc

    async def invalidate_group(self, group: str) -> None:
        """Drop every value of ``group``: here at once, on other instances within ``generation_ttl``.

        Raises ``StorageUnavailableError`` when Table Storage cannot record it (retry the invalidation)."""
        self._epoch += 1
        try:
            await self._generations.replace(group)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
            raise StorageUnavailableError("cache invalidation could not be stored") from exc

    async def invalidate_groups(self, groups: Collection[str]) -> None:
        """``invalidate_group`` for many groups at once (a queue message's worth): a few transactions."""
        self._epoch += 1
        try:
            await self._generations.replace_many(groups)
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
            raise StorageUnavailableError("cache invalidation could not be stored") from exc

    async def sweep_expired(self) -> int:
        """Delete expired rows (Table Storage has no TTL); the number deleted. For a timer trigger."""
        try:
            return await self._l2.sweep_expired()
        except StorageUnavailableError as exc:
            self._storage.failed(exc)
            raise StorageUnavailableError("cache sweep could not reach Table Storage") from exc

    # --- helpers --------------------------------------------------------------------------------------

    def _valid(self, row: StoredRow | None, generation: str) -> Entry | None:
        """The row's entry if it was written under ``generation`` (else it was invalidated)."""
        if row is not None and row.corrupt:
            self.stats.storage_errors += 1
        if row is None or row.entry is None or row.entry.generation != generation:
            return None
        return row.entry

    def _fallback(self, key: CacheKey, generation: str, l2_entry: Entry | None, fresh: Freshness) -> Entry | None:
        """The newest value (L1 or L2) that may still be served when the upstream fails."""
        now = self._clock()
        candidates = [self._l1.get(key, allow_expired=True), l2_entry]
        usable = [
            e
            for e in candidates
            if e is not None
            and not e.negative
            and e.generation == generation
            and now < e.expires_at
            and e.age(now) < fresh.max_staleness
        ]
        return max(usable, key=lambda e: e.fetched_at, default=None)

    def _count(self, source: Source) -> None:
        self._listener.answered(source)
        self.stats.count_answer(source)
