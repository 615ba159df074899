"""Expiring leases in a Table: "only one worker does this right now", across every instance.

Taking a lease inserts its row (409 if someone holds it); a row whose time is up is taken over with an
ETag-conditional replace (412 if another worker took it first). A holder that crashes simply lets its
lease expire, so nothing stays blocked longer than the lease duration. Releasing deletes the row only
if it is still ours (same ETag).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import StorageUnavailableError
from shared.names import LEASES_TABLE
from shared.storage import Tables, safe_key
from shared.subscriptions.clock import Clock, utcnow

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

_PARTITION = "lease"


@dataclass(frozen=True)
class Lease:
    """A held lease: its name, our owner token and the ETag that proves it is still ours."""

    name: str
    owner: str
    etag: str
    expires_at: datetime


class LeaseStore:
    """``hold(name, duration)`` yields True when this worker holds the lease, False when another does."""

    def __init__(self, tables: Tables, clock: Clock = utcnow, *, table: str = LEASES_TABLE) -> None:
        self._tables = tables
        self._table_name = table
        self._clock = clock

    async def _table(self) -> TableClient:
        return await self._tables.get(self._table_name)

    async def acquire(self, name: str, duration: timedelta) -> Lease | None:
        """Take the lease if it is free or expired; None if another worker holds it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._table()
        now = self._clock()
        owner = uuid.uuid4().hex
        entity: dict[str, Any] = {
            "PartitionKey": _PARTITION,
            "RowKey": safe_key(name),
            "Name": name[:1024],
            "Owner": owner,
            "ExpiresAt": now + duration,
        }
        try:
            try:
                meta = await table.create_entity(entity)
            except ResourceExistsError:
                current = await table.get_entity(_PARTITION, safe_key(name))
                if current["ExpiresAt"] > now:
                    return None
                meta = await table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceModifiedError, ResourceNotFoundError, ResourceExistsError):
            return None  # another worker took it (or released it) between our read and write
        return Lease(name, owner, str(meta["etag"]), now + duration)

    async def release(self, lease: Lease) -> None:
        """Give the lease back if it is still ours; an expired-and-taken lease is left to its new holder."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        # Not releasing only delays the next holder until expiry.
        with contextlib.suppress(AzureError, StorageUnavailableError):
            table = await self._table()
            await table.delete_entity(
                _PARTITION, safe_key(lease.name), etag=lease.etag, match_condition=MatchConditions.IfNotModified
            )

    @contextlib.asynccontextmanager
    async def hold(self, name: str, duration: timedelta) -> AsyncIterator[bool]:
        """``async with leases.hold(name, d) as held:`` work only ``if held``; released on exit."""
        lease = await self.acquire(name, duration)
        try:
            yield lease is not None
        finally:
            if lease is not None:
                await self.release(lease)
