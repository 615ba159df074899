"""Per-handler idempotency markers in a Table: what makes redelivered notifications effect-free.

One row per (notification identity, handler). Before a handler runs, its row is *claimed* with an
insert-if-not-exists (409 if it exists): a ``running`` claim with a short lease. All rows of one
identity share a partition, so the claims (and later the completions) of one event are one
entity-group transaction. After success the row
becomes ``done``; after failure the claim is deleted so a redelivery runs the handler again. Hence:

- a handler that completed is skipped on every redelivery (``done``);
- two workers holding duplicate copies at once (Graph redelivered a POST we were slow to ack) cannot
  both run it: the loser sees ``busy`` and retries later;
- a worker that died mid-handler leaves a claim whose lease runs out; the next attempt takes it over
  with a conditional update (the ETag decides a race between two takers);
- a claim carries its ``owner`` (one token per dispatch of an event), so the same dispatch retrying in
  place after a storage outage takes its own claim back instead of seeing it as ``busy``.

Rows expire after ``DedupeConfig.ttl`` (Tables have no TTL: expired rows count as absent and ``sweep``
deletes them). The partition key is the identity, so markers spread over partitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import StorageUnavailableError
from shared.names import DEDUPE_TABLE
from shared.storage import Tables, safe_key
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from azure.data.tables import TableEntity
    from azure.data.tables.aio import TableClient

log = get_logger("events.dedupe")

ClaimState = Literal["acquired", "done", "busy"]
_RUNNING, _DONE = "running", "done"


@dataclass(frozen=True)
class DedupeConfig:
    """Marker table and lifetimes."""

    table: str = DEDUPE_TABLE
    # The Storage queue's default message TTL: any copy of a message still around finds its markers.
    ttl: timedelta = timedelta(days=7)
    # A claim's lease is the handler's timeout plus this margin (the bus enforces the timeout).
    lease_margin_seconds: float = 5.0


@dataclass(frozen=True)
class Claim:
    """The answer to "may I run this handler for this notification?"."""

    identity: str
    handler: str
    state: ClaimState
    etag: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DedupeStore:
    """Claims, completes and releases per-handler markers; sweeps expired ones."""

    def __init__(
        self, tables: Tables, config: DedupeConfig | None = None, *, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self._tables = tables
        self.config = config or DedupeConfig()
        self._now = now

    async def _table(self) -> TableClient:
        return await self._tables.get(self.config.table)

    def _entity(self, identity: str, handler: str, state: str, lease_seconds: float, owner: str = "") -> dict[str, Any]:
        now = self._now()
        return {
            "PartitionKey": identity,
            "RowKey": safe_key(handler),
            "State": state,
            "Owner": owner,
            "LeaseUntil": now + timedelta(seconds=lease_seconds),
            "ExpiresAt": now + self.config.ttl,
        }

    async def claim(self, identity: str, leases: Mapping[str, float], owner: str = "") -> dict[str, Claim]:
        """Try to become the one worker running each handler (name → timeout in seconds) for ``identity``.

        The common case, a new notification, costs one entity-group transaction (all markers of an
        identity share its partition); a redelivery costs that failed transaction plus one query.
        ``StorageUnavailableError`` when Storage does not answer.
        """
        from azure.data.tables import TableTransactionError

        table = await self._table()
        margin = self.config.lease_margin_seconds
        entities = {h: self._entity(identity, h, _RUNNING, lease + margin, owner) for h, lease in leases.items()}
        if not entities:
            return {}
        try:
            created = await table.submit_transaction([("create", e) for e in entities.values()])
            return {h: Claim(identity, h, "acquired", r.get("etag")) for h, r in zip(entities, created, strict=True)}
        except TableTransactionError as error:
            if error.status_code != 409:
                raise
        rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": identity})
        existing = {row["RowKey"]: row async for row in rows}
        claims = await asyncio.gather(
            *(self._claim_one(table, h, e, existing.get(e["RowKey"])) for h, e in entities.items())
        )
        return {c.handler: c for c in claims}

    async def _claim_one(
        self, table: TableClient, handler: str, entity: dict[str, Any], existing: TableEntity | None
    ) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        identity = entity["PartitionKey"]
        if existing is None:
            try:
                created = await table.create_entity(entity)
            except ResourceExistsError:
                return Claim(identity, handler, "busy")  # another worker claimed it a moment ago
            return Claim(identity, handler, "acquired", created.get("etag"))
        now = self._now()
        if existing.get("ExpiresAt", now) > now:
            if existing.get("State") == _DONE:
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

    async def complete(self, claims: Collection[Claim]) -> None:
        """Mark handlers done (unconditionally: they did run, whoever holds the rows now); one
        transaction per identity. ``StorageUnavailableError`` when Storage does not answer."""
        from azure.data.tables import UpdateMode

        by_identity: dict[str, list[Claim]] = {}
        for claim in claims:
            by_identity.setdefault(claim.identity, []).append(claim)
        table = await self._table()
        for identity, group in by_identity.items():
            entities = [self._entity(identity, c.handler, _DONE, 0) for c in group]
            await table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities])

    async def release(self, claim: Claim) -> None:
        """Drop our claim after a failure so a redelivery can run the handler; best effort (the lease
        runs out anyway)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        try:
            await (await self._table()).delete_entity(
                claim.identity, safe_key(claim.handler), etag=claim.etag, match_condition=MatchConditions.IfNotModified
            )
        except (AzureError, StorageUnavailableError) as error:
            log.info("could not release claim of %s on %s: %s", claim.handler, claim.identity, type(error).__name__)

    async def completed(self, identity: str) -> set[str]:
        """Names (keys) of the handlers marked done for ``identity`` and not expired."""
        table = await self._table()
        now = self._now()
        rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": identity})
        return {r["RowKey"] async for r in rows if r.get("State") == _DONE and r.get("ExpiresAt", now) > now}

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
