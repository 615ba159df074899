"""Which subscriptions exist because of the desired state, and which were made ad hoc.

``SubscriptionRecord`` has no field for it, so this small table (one row per subscription we created)
keeps it: reconcile only ever removes subscriptions whose origin is ``desired``. A registry record
without an origin row (made by older code or by hand) counts as ad hoc, so it is never removed by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shared.names import ORIGINS_TABLE
from shared.storage import Tables, safe_key

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

Origin = Literal["desired", "adhoc"]
_PARTITION = "origin"


@dataclass(frozen=True)
class OriginRow:
    subscription_id: str
    origin: Origin
    resource: str


class OriginStore:
    """get/put/delete one subscription's origin; ``desired_for(resource)`` lists the reconcile-owned ones."""

    def __init__(self, tables: Tables, *, table: str = ORIGINS_TABLE) -> None:
        self._tables = tables
        self._table_name = table

    async def _table(self) -> TableClient:
        return await self._tables.get(self._table_name)

    async def get(self, subscription_id: str) -> OriginRow | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await (await self._table()).get_entity(_PARTITION, safe_key(subscription_id))
        except ResourceNotFoundError:
            return None
        return _row(dict(entity))

    async def put(self, row: OriginRow) -> None:
        entity = {
            "PartitionKey": _PARTITION,
            "RowKey": safe_key(row.subscription_id),
            "SubscriptionId": row.subscription_id,
            "Origin": row.origin,
            "Resource": row.resource,
        }
        await (await self._table()).upsert_entity(entity)

    async def delete(self, subscription_id: str) -> None:
        await (await self._table()).delete_entity(_PARTITION, safe_key(subscription_id))

    async def all(self) -> list[OriginRow]:
        return await self._query("PartitionKey eq @pk", {"pk": _PARTITION})

    async def desired_for(self, resource: str) -> list[OriginRow]:
        """The desired-state subscriptions of one resource (normally one; more after an interrupted swap)."""
        rows = await self._query(
            "PartitionKey eq @pk and Resource eq @resource", {"pk": _PARTITION, "resource": resource}
        )
        return [row for row in rows if row.origin == "desired"]

    async def _query(self, query: str, parameters: dict[str, Any]) -> list[OriginRow]:
        table = await self._table()
        return [_row(dict(e)) async for e in table.query_entities(query, parameters=parameters)]


def _row(entity: dict[str, Any]) -> OriginRow:
    origin: Origin = "desired" if entity.get("Origin") == "desired" else "adhoc"
    return OriginRow(entity["SubscriptionId"], origin, entity.get("Resource", ""))
