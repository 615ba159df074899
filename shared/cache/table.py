"""The Table-Storage tier (L2): value rows, refresh leases and group generations in one table.

Every storage failure (outage, timeout, or an answer this module does not expect) leaves it as
``StorageUnavailableError`` (the storage layer's one type), so the manager has one thing to catch and
degrade on. Conflicts are not failures: they come back as ``False``/``None``.

Table Storage has no TTL. Rows carry ``ExpiresAt`` (epoch seconds, Edm.Double); readers treat an
expired row as a miss, and ``sweep_expired`` deletes them with one filtered, projected scan::

    query_entities("ExpiresAt lt @now", parameters={"now": <epoch>}, select=["PartitionKey", "RowKey"])

then deletes by partition in transactions of up to 100 rows, each conditional on the ETag the scan
saw, so a row refreshed between scan and delete survives. Generation rows have no ``ExpiresAt`` (a
comparison on a missing property is false), so the sweeper never drops a group's generation: losing
one would make every entry written under the original generation valid again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared.cache.codec import CorruptEntryError, unpack
from shared.cache.entry import Entry
from shared.cache.keys import GENERATION_PREFIX, CacheKey, group_address
from shared.names import CACHE_TABLE
from shared.storage import storage_call, unavailable
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.storage import Tables

log = get_logger("cache.table")

DEFAULT_TABLE = CACHE_TABLE
TRANSACTION_LIMIT = 100
KIND_VALUE = "value"
KIND_NEGATIVE = "negative"
KIND_TOMBSTONE = "tombstone"


@dataclass(frozen=True)
class StoredRow:
    """A value row as read: ``entry`` is None for a tombstone, an expired or an undecodable row, which
    all read as misses; ``etag`` lets the next write be conditional on nothing having changed since."""

    entry: Entry | None
    etag: str
    corrupt: bool = False


class TableTier:
    """L2 operations on one table; the client comes from ``get_client`` on every call, so constructing
    this never does I/O and a table that could not be created yet is retried on the next call."""

    def __init__(
        self, get_client: Callable[[], Awaitable[TableClient]], *, clock: Callable[[], float], timeout: float
    ) -> None:
        self._get_client = get_client
        self._clock = clock
        self._timeout = timeout

    @classmethod
    def from_tables(
        cls, tables: Tables, *, clock: Callable[[], float], timeout: float, table: str = DEFAULT_TABLE
    ) -> TableTier:
        return cls(lambda: tables.get(table), clock=clock, timeout=timeout)

    @contextlib.asynccontextmanager
    async def _client(self, operation: str, *, bounded: bool = True) -> AsyncIterator[TableClient]:
        """The table client, the call bounded by ``timeout`` (unless not ``bounded``), any failure made
        ``StorageUnavailableError``."""
        try:
            async with storage_call(f"cache {operation}", self._timeout if bounded else None):
                yield await self._get_client()
        except AzureError as exc:  # an answer the cache does not expect (e.g. 400): degrade all the same
            raise unavailable(f"cache {operation}", exc) from exc

    # --- values ---------------------------------------------------------------------------------------

    async def read(self, key: CacheKey) -> StoredRow | None:
        """The value row, or None when there is none."""
        async with self._client("read") as client:
            try:
                row = await client.get_entity(key.partition_key, key.value_row_key)
            except ResourceNotFoundError:
                return None
        etag = str(row.metadata["etag"])
        kind = row.get("Kind")
        if kind not in (KIND_VALUE, KIND_NEGATIVE) or float(row.get("ExpiresAt", 0.0)) <= self._clock():
            return StoredRow(None, etag)
        try:
            entry = Entry(
                payload=unpack(row),
                content_hash=str(row["Hash"]),
                fetched_at=float(row["FetchedAt"]),
                expires_at=float(row["ExpiresAt"]),
                generation=str(row.get("Generation", "")),
                negative=kind == KIND_NEGATIVE,
            )
        except (CorruptEntryError, KeyError, TypeError, ValueError) as exc:
            log.warning("cache row %s/%s is unreadable, treated as a miss: %s", row["PartitionKey"], row["RowKey"], exc)
            return StoredRow(None, etag, corrupt=True)
        return StoredRow(entry, etag)

    async def write(self, key: CacheKey, entry: Entry, packed: Mapping[str, Any], *, etag: str | None) -> bool:
        """Store ``entry`` only if the row is still as last read (absent when ``etag`` is None).

        False means someone changed it meanwhile: another writer, or an invalidation whose tombstone
        must win over a value fetched before it.
        """
        row: dict[str, Any] = {
            "PartitionKey": key.partition_key,
            "RowKey": key.value_row_key,
            "Kind": KIND_NEGATIVE if entry.negative else KIND_VALUE,
            "Hash": entry.content_hash,
            "FetchedAt": entry.fetched_at,
            "ExpiresAt": entry.expires_at,
            "Generation": entry.generation,
            **packed,
        }
        async with self._client("write") as client:
            try:
                if etag is None:
                    await client.create_entity(row)
                else:
                    await client.update_entity(
                        row, mode="replace", etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                return False
        return True

    async def tombstone(self, key: CacheKey, *, until: float) -> None:
        """Replace the value with a marker that reads as a miss and makes in-flight conditional writes fail."""
        row = {"PartitionKey": key.partition_key, "RowKey": key.value_row_key, "Kind": KIND_TOMBSTONE}
        async with self._client("tombstone") as client:
            await client.upsert_entity({**row, "ExpiresAt": until}, mode="replace")

    # --- leases ---------------------------------------------------------------------------------------

    async def acquire_lease(self, key: CacheKey, *, owner: str, duration: float) -> str | None:
        """The lease row's ETag if we now hold the refresh lease, None if a live lease belongs to another.

        Insert-if-absent (409 when taken); an expired lease is taken over by an update conditional on
        the ETag we read, so of several instances racing for an abandoned lease exactly one wins.
        """
        now = self._clock()
        row = {
            "PartitionKey": key.partition_key,
            "RowKey": key.lease_row_key,
            "Owner": owner,
            "ExpiresAt": now + duration,
        }
        async with self._client("lease") as client:
            try:
                return str((await client.create_entity(row))["etag"])
            except ResourceExistsError:
                pass
            try:
                current = await client.get_entity(key.partition_key, key.lease_row_key)
            except ResourceNotFoundError:
                return None  # released just now: its holder has written the value; the caller re-reads
            if float(current.get("ExpiresAt", 0.0)) > now:
                return None
            try:
                result = await client.update_entity(
                    row, mode="replace", etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
            return str(result["etag"])

    async def release_lease(self, key: CacheKey, etag: str) -> None:
        """Delete our lease unless someone took it over after it expired."""
        async with self._client("release") as client:
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                await client.delete_entity(
                    key.partition_key, key.lease_row_key, etag=etag, match_condition=MatchConditions.IfNotModified
                )

    # --- generations ----------------------------------------------------------------------------------

    async def read_generation(self, group: str) -> str:
        """The group's current generation ("" until it is first invalidated)."""
        address = group_address(group)
        async with self._client("generation") as client:
            try:
                row = await client.get_entity(address.partition_key, address.row_key)
            except ResourceNotFoundError:
                return ""
        return str(row.get("Generation", ""))

    async def write_generation(self, group: str, generation: str) -> None:
        address = group_address(group)
        row = {"PartitionKey": address.partition_key, "RowKey": address.row_key, "Generation": generation}
        async with self._client("invalidate") as client:
            await client.upsert_entity(row, mode="replace")

    async def write_generations(self, generations: Mapping[str, str]) -> None:
        """Many groups' generations: one entity-group transaction per generation partition (≤ 100 rows).
        Not bounded by ``timeout``: this is the queue processor's batch, bounded by its handler timeout, and
        under load a transaction of 100 rows can take longer than one read may."""
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for group, generation in generations.items():
            address = group_address(group)
            by_partition[address.partition_key].append(
                {"PartitionKey": address.partition_key, "RowKey": address.row_key, "Generation": generation}
            )
        chunks = [rows[i : i + 100] for rows in by_partition.values() for i in range(0, len(rows), 100)]
        async with self._client("invalidate", bounded=False) as client:
            await asyncio.gather(
                *(
                    client.submit_transaction([("upsert", row, {"mode": "replace"}) for row in chunk])
                    for chunk in chunks
                )
            )

    # --- sweeping -------------------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Delete every value, tombstone and lease row past its ``ExpiresAt``; the number deleted."""
        async with self._client("sweep", bounded=False) as client:  # a scan may take longer than one call
            by_partition: dict[str, list[Any]] = defaultdict(list)
            rows = client.query_entities(
                "ExpiresAt lt @now", parameters={"now": self._clock()}, select=["PartitionKey", "RowKey"]
            )
            async for row in rows:
                if not str(row["RowKey"]).startswith(GENERATION_PREFIX):
                    by_partition[str(row["PartitionKey"])].append(row)
        deleted = 0
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), TRANSACTION_LIMIT):
                deleted += await self._delete_batch(partition_rows[start : start + TRANSACTION_LIMIT])
        return deleted

    async def _delete_batch(self, rows: list[Any]) -> int:
        """One transaction; if any row changed or vanished meanwhile, delete the rest one by one."""
        from azure.data.tables import TableTransactionError  # only the sweeper needs the SDK's own types

        conditional = {"match_condition": MatchConditions.IfNotModified}
        async with self._client("sweep") as client:
            try:
                await client.submit_transaction([("delete", row, conditional) for row in rows])
                return len(rows)
            except TableTransactionError:
                pass  # one row failed its condition (refreshed or gone meanwhile): the batch was refused
        deleted = 0
        for row in rows:
            async with self._client("sweep") as client:
                try:
                    await client.delete_entity(row, match_condition=MatchConditions.IfNotModified)
                    deleted += 1
                except (ResourceModifiedError, ResourceNotFoundError):
                    pass
        return deleted
