"""Per-handler idempotency markers in a Table: what makes redelivered notifications effect-free.

One row per (notification identity, handler). Before a handler runs, its row is *claimed* with an
insert-if-not-exists (409 if it exists): a ``running`` claim with a short lease. After success the row
becomes ``done``; after failure the claim is deleted so a redelivery runs the handler again. Hence:

- a handler that completed is skipped on every redelivery (``done``);
- two workers holding duplicate copies at once (Graph redelivered a POST we were slow to ack) cannot
  both run it: the loser sees ``busy`` and retries later;
- a worker that died mid-handler leaves a claim whose lease runs out; the next attempt takes it over
  with a conditional update (the ETag decides a race between two takers);
- a claim carries its ``owner`` (one token per dispatch), so the same dispatch retrying in place after
  a storage outage takes its own claim back instead of seeing it as ``busy``.

**Completion by owner.** A dispatch whose every claimed handler succeeded completes them all with one
row: its owner's (``complete_owner``). A ``running`` claim whose owner row exists counts as ``done``, so a
message of a hundred items costs its claims and one insert, not its claims and as many updates again
(measured on Azurite: a 50-row transaction costs ~11 ms of its CPU, a one-row insert ~3). A dispatch where
something failed marks its successes ``done`` row by row (``complete``) and releases its failures, so an
owner row never covers a claim whose handler did not run.

**Partitioning.** A queue message carries many events, and an entity-group transaction (≤ 100 rows)
must stay in one partition; so the partition is not the identity but one of ``DedupeConfig.partitions``
buckets picked by the identity's hash (RowKey: identity and handler). The claims of a whole message are
then a handful of transactions, however many items it holds, and the same identity always lands on the
same row whichever message carries it. A transaction is all-or-nothing: if any of its rows exists
(a redelivery, a copy of the notification in another message), nothing was written; the error names
the row, which is decided alone (read, then create or take over, exactly as the single-row path does)
while the rest is tried again as one transaction.

Rows expire after ``DedupeConfig.ttl`` (Tables have no TTL: expired rows count as absent and ``sweep``
deletes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import StorageUnavailableError
from shared.names import DEDUPE_TABLE
from shared.storage import Tables, hashed_key, safe_key
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from azure.data.tables import TableEntity
    from azure.data.tables.aio import TableClient

log = get_logger("events.dedupe")

ClaimState = Literal["acquired", "done", "busy"]
_RUNNING, _DONE = "running", "done"
OWNERS_PARTITION = "owners"  # one row per dispatch that completed every claim it made
TRANSACTION_LIMIT = 100  # rows per entity-group transaction
CONFLICTS_BEFORE_ROW_BY_ROW = 3  # existing rows one transaction steps around before going row by row


@dataclass(frozen=True)
class DedupeConfig:
    """Marker table, its partitioning and lifetimes."""

    table: str = DEDUPE_TABLE
    # The Storage queue's default message TTL: any copy of a message still around finds its markers.
    ttl: timedelta = timedelta(days=7)
    # A claim's lease is the handler's timeout plus this margin (the bus enforces the timeout).
    lease_margin_seconds: float = 5.0
    # Buckets the markers are spread over: fewer means fewer transactions per message, more means more
    # throughput (Table Storage serves about 2,000 rows/s per partition; each event writes 2 rows).
    partitions: int = 2


@dataclass(frozen=True)
class Claim:
    """The answer to "may I run this handler for this notification?"."""

    identity: str
    handler: str
    state: ClaimState
    etag: str | None = None


ClaimRequest = tuple[str, Mapping[str, float]]  # (identity, handler name → timeout in seconds)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DedupeStore:
    """Claims, completes and releases per-handler markers, many per transaction; sweeps expired ones."""

    def __init__(
        self, tables: Tables, config: DedupeConfig | None = None, *, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self._tables = tables
        self.config = config or DedupeConfig()
        self._now = now

    async def _table(self) -> TableClient:
        return await self._tables.get(self.config.table)

    def partition(self, identity: str) -> str:
        """The bucket of ``identity``'s markers (stable: it depends on the identity alone)."""
        return f"d{int(hashed_key(identity)[:8], 16) % self.config.partitions}"

    def _entity(self, identity: str, handler: str, state: str, lease_seconds: float, owner: str = "") -> dict[str, Any]:
        now = self._now()
        return {
            "PartitionKey": self.partition(identity),
            "RowKey": f"{safe_key(identity)}~{safe_key(handler)}",
            "State": state,
            "Owner": owner,
            "LeaseUntil": now + timedelta(seconds=lease_seconds),
            "ExpiresAt": now + self.config.ttl,
        }

    async def claim(self, identity: str, leases: Mapping[str, float], owner: str = "") -> dict[str, Claim]:
        """Try to become the one worker running each handler (name → timeout in seconds) for ``identity``."""
        claims = await self.claim_many([(identity, leases)], owner)
        return {handler: claim for (_, handler), claim in claims.items()}

    async def claim_many(self, requests: Sequence[ClaimRequest], owner: str = "") -> dict[tuple[str, str], Claim]:
        """Claim every (identity, handler) of ``requests`` at once: one transaction per partition and
        100 rows when none exists yet; a chunk that meets an existing row is claimed row by row.
        Keys of the answer: (identity, handler). ``StorageUnavailableError`` when Storage does not answer.
        """
        margin = self.config.lease_margin_seconds
        wanted: dict[tuple[str, str], dict[str, Any]] = {}
        for identity, leases in requests:
            for handler, lease in leases.items():
                wanted[(identity, handler)] = self._entity(identity, handler, _RUNNING, lease + margin, owner)
        if not wanted:
            return {}
        table = await self._table()
        owners: dict[str, bool] = {}  # owner token → completed, looked up once per call
        answers = await asyncio.gather(*(self._claim_chunk(table, chunk, owners) for chunk in _chunks(wanted)))
        return {key: claim for answer in answers for key, claim in answer.items()}

    async def _claim_chunk(
        self, table: TableClient, chunk: dict[tuple[str, str], dict[str, Any]], owners: dict[str, bool]
    ) -> dict[tuple[str, str], Claim]:
        """One transaction; a row that exists fails it whole (nothing written) and the error names that
        row, so it is set aside and the rest is tried again. Past ``CONFLICTS_BEFORE_ROW_BY_ROW`` such rows
        (a redelivered message), the rest is decided row by row."""
        from azure.data.tables import TableTransactionError

        pending = dict(chunk)
        claims: dict[tuple[str, str], Claim] = {}
        aside: dict[tuple[str, str], dict[str, Any]] = {}
        while pending:
            try:
                created = await table.submit_transaction([("create", e) for e in pending.values()])
            except TableTransactionError as error:
                if error.status_code != 409:
                    raise
                keys = list(pending)
                index = error.index if 0 <= error.index < len(keys) else 0
                aside[keys[index]] = pending.pop(keys[index])
                if len(aside) > CONFLICTS_BEFORE_ROW_BY_ROW:
                    aside.update(pending)
                    pending = {}
                continue
            claims.update(
                {k: Claim(k[0], k[1], "acquired", r.get("etag")) for k, r in zip(pending, created, strict=True)}
            )
            break
        decided = await asyncio.gather(*(self._claim_one(table, k, entity, owners) for k, entity in aside.items()))
        claims.update(zip(aside, decided, strict=True))
        return claims

    async def _claim_one(
        self, table: TableClient, key: tuple[str, str], entity: dict[str, Any], owners: dict[str, bool]
    ) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        identity, handler = key
        existing = await _get(table, entity["PartitionKey"], entity["RowKey"])
        if existing is None:
            try:
                created = await table.create_entity(entity)
            except ResourceExistsError:
                return Claim(identity, handler, "busy")  # another worker claimed it a moment ago
            return Claim(identity, handler, "acquired", created.get("etag"))
        now = self._now()
        if existing.get("ExpiresAt", now) > now:
            if await self._is_done(table, existing, owners):
                return Claim(identity, handler, "done")
            ours = bool(entity["Owner"]) and existing.get("Owner") == entity["Owner"]
            if existing.get("LeaseUntil", now) > now and not ours:
                return Claim(identity, handler, "busy")
        # Our own claim, an expired marker or an abandoned claim: take it over unless someone else just did.
        try:
            updated = await table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=existing.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return Claim(identity, handler, "busy")
        return Claim(identity, handler, "acquired", updated.get("etag"))

    async def _is_done(self, table: TableClient, row: TableEntity, owners: dict[str, bool]) -> bool:
        """A marker is done when its row says so, or when it is a claim whose owner completed everything
        (``owners`` remembers the owners already looked up)."""
        if row.get("State") == _DONE:
            return True
        owner = str(row.get("Owner") or "")
        if owner and owner not in owners:
            done = await _get(table, OWNERS_PARTITION, safe_key(owner))
            owners[owner] = done is not None and done.get("ExpiresAt", self._now()) > self._now()
        return owners.get(owner, False)

    async def complete_owner(self, owner: str) -> None:
        """Mark done every claim ``owner`` holds, with one row. Only for a dispatch whose every claimed
        handler succeeded. ``StorageUnavailableError`` when Storage does not answer."""
        from azure.data.tables import UpdateMode

        if not owner:
            raise ValueError("completion by owner needs the owner token the claims were made with")
        row = {
            "PartitionKey": OWNERS_PARTITION,
            "RowKey": safe_key(owner),
            "State": _DONE,
            "ExpiresAt": self._now() + self.config.ttl,
        }
        await (await self._table()).upsert_entity(row, mode=UpdateMode.REPLACE)

    async def complete(self, claims: Collection[Claim]) -> None:
        """Mark handlers done (unconditionally: they did run, whoever holds the rows now); one
        transaction per partition and 100 rows. ``StorageUnavailableError`` when Storage does not answer."""
        from azure.data.tables import UpdateMode

        rows = {(c.identity, c.handler): self._entity(c.identity, c.handler, _DONE, 0) for c in claims}
        if not rows:
            return
        table = await self._table()
        await asyncio.gather(
            *(
                table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in chunk.values()])
                for chunk in _chunks(rows)
            )
        )

    async def release(self, claim: Claim) -> None:
        """Drop our claim after a failure so a redelivery can run the handler; best effort (the lease
        runs out anyway)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        try:
            await (await self._table()).delete_entity(
                self.partition(claim.identity),
                f"{safe_key(claim.identity)}~{safe_key(claim.handler)}",
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (AzureError, StorageUnavailableError) as error:
            log.info("could not release claim of %s on %s: %s", claim.handler, claim.identity, type(error).__name__)

    async def completed(self, identity: str) -> set[str]:
        """Names (keys) of the handlers marked done for ``identity`` and not expired."""
        table = await self._table()
        now, owners = self._now(), dict[str, bool]()
        prefix = f"{safe_key(identity)}~"
        rows = table.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": self.partition(identity), "low": prefix, "high": prefix[:-1] + chr(ord("~") + 1)},
        )
        return {
            str(r["RowKey"])[len(prefix) :]
            async for r in rows
            if r.get("ExpiresAt", now) > now
            and "~" not in str(r["RowKey"])[len(prefix) :]
            and await self._is_done(table, r, owners)
        }

    async def sweep(self, limit: int = 20_000) -> int:
        """Delete up to ``limit`` expired markers; run from a timer. Returns how many were deleted.

        The markers of one event share a partition, so they go in one transaction; each delete is
        conditional on the ETag the scan saw, so a marker re-claimed meanwhile survives (its transaction
        fails and is skipped until the next sweep).
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        table = await self._table()
        deleted = 0
        expired = table.query_entities(
            "ExpiresAt lt @now", parameters={"now": self._now()}, select=["PartitionKey", "RowKey"]
        )
        batch: list[Any] = []

        async def flush() -> int:
            operations = [
                ("delete", row, {"etag": row.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
                for row in batch
            ]
            batch.clear()
            try:
                await table.submit_transaction(operations)
            except AzureError:  # changed or gone meanwhile: leave it to the next sweep
                return 0
            return len(operations)

        async for row in expired:
            if batch and (batch[0]["PartitionKey"] != row["PartitionKey"] or len(batch) == 100):
                deleted += await flush()
                if deleted >= limit:
                    return deleted
            batch.append(row)
        if batch:
            deleted += await flush()
        return deleted


def _chunks(rows: dict[tuple[str, str], dict[str, Any]]) -> list[dict[tuple[str, str], dict[str, Any]]]:
    """``rows`` split into groups of one partition and at most ``TRANSACTION_LIMIT`` rows."""
    by_partition: dict[str, list[tuple[tuple[str, str], dict[str, Any]]]] = {}
    for key, row in rows.items():
        by_partition.setdefault(row["PartitionKey"], []).append((key, row))
    return [
        dict(group[start : start + TRANSACTION_LIMIT])
        for group in by_partition.values()
        for start in range(0, len(group), TRANSACTION_LIMIT)
    ]


async def _get(table: TableClient, partition: str, row: str) -> TableEntity | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return await table.get_entity(partition, row)
    except ResourceNotFoundError:
        return None
