"""The directory mirror's rows in Table Storage: one row per user, alias rows, and one state row.

Layout of the ``mirror`` table (partition → rows):

- ``user`` / ``{guid}``: ``User`` (the API's shaped fields as JSON), ``Version`` (a hash of them), ``Seq``
  (how many changes the mirror applied to this user: part of each event's identity, so a user that goes
  back to an earlier state still makes a new event), ``Published`` (the event for ``Seq`` went out),
  ``Deleted`` (a tombstone: the user is gone; the API answers 404; swept after ``TOMBSTONE_RETENTION``)
  and ``Seen`` (the resync that saw it).
- ``alias`` / ``{upn, lower-cased}``: ``UserId``. The API resolves a UPN through these rows.
- ``state`` / ``users``: the delta link, the resume point of a round in progress and the round times
  (read and written by ``shared.mirror.sync`` and ``shared.mirror.coordinator``).

Writes go in transactions of up to 100 rows of one partition, so a page of 100 users costs a few requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.names import MIRROR_TABLE
from shared.storage import Tables, safe_key

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

USERS = "user"
ALIASES = "alias"
STATE = "state"
BATCH = 100  # Table Storage's largest transaction
FILTER_TERMS = 15  # Table Storage allows at most 15 comparisons in one filter
# A deleted user's row stays this long: Entra ID can restore a deleted user for 30 days, and it outlives the
# dedupe markers (7 days), so an event id a swept row could repeat has no marker left to be dropped by.
TOMBSTONE_RETENTION = timedelta(days=30)


def content_version(user: dict[str, Any]) -> str:
    """The content version of a shaped user: equal fields, equal version, on every instance."""
    text = json.dumps(user, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def aliases_of(user: dict[str, Any]) -> set[str]:
    """The names the API resolves a user by besides its guid: the userPrincipalName (lower-cased)."""
    upn = user.get("userPrincipalName")
    return {upn.lower()} if isinstance(upn, str) and upn else set()


@dataclass(frozen=True)
class MirrorRow:
    """One user as mirrored."""

    user_id: str
    user: dict[str, Any]
    version: str
    seq: int
    published: bool
    deleted: bool = False
    change: str = "updated"  # what the event for ``seq`` says (created/updated/deleted)

    def entity(self, seen: str | None = None) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": USERS,
            "RowKey": self.user_id,
            "User": json.dumps(self.user, separators=(",", ":"), ensure_ascii=False),
            "Version": self.version,
            "Seq": self.seq,
            "Published": self.published,
            "Deleted": self.deleted,
            "Change": self.change,
            # Always present: a filter on a missing property matches nothing (see ``unseen``).
            "Seen": seen or "",
        }
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> MirrorRow:
        return cls(
            user_id=str(entity["RowKey"]),
            user=json.loads(entity.get("User") or "{}"),
            version=str(entity.get("Version") or ""),
            seq=int(entity.get("Seq") or 0),
            published=bool(entity.get("Published")),
            deleted=bool(entity.get("Deleted")),
            change=str(entity.get("Change") or "updated"),
        )


class MirrorStore:
    """Reads and writes the mirror's rows; ``ops`` counts Table requests (for the benchmark)."""

    def __init__(self, tables: Tables, *, table: str = MIRROR_TABLE) -> None:
        self._tables = tables
        self._table_name = table
        self.ops = 0

    async def _table(self) -> TableClient:
        return await self._tables.get(self._table_name)

    # --- reads -------------------------------------------------------------------------------------

    async def user(self, user_id: str) -> MirrorRow | None:
        entity = await self._get(USERS, user_id.lower())
        return None if entity is None else MirrorRow.from_entity(entity)

    async def alias(self, name: str) -> str | None:
        """The guid a UPN names, if the mirror knows it."""
        entity = await self._get(ALIASES, safe_key(name.lower()))
        user_id = None if entity is None else entity.get("UserId")
        return user_id if isinstance(user_id, str) else None

    async def users(self, user_ids: Iterable[str]) -> dict[str, MirrorRow]:
        """The stored rows of some users (a page's worth), a few ids per query."""
        ids = sorted({i.lower() for i in user_ids})
        table = await self._table()
        found: dict[str, MirrorRow] = {}
        for start in range(0, len(ids), FILTER_TERMS - 1):
            chunk = ids[start : start + FILTER_TERMS - 1]
            names = [f"k{n}" for n in range(len(chunk))]
            terms = " or ".join(f"RowKey eq @{name}" for name in names)
            parameters = {"pk": USERS, **dict(zip(names, chunk, strict=True))}
            self.ops += 1
            query = f"PartitionKey eq @pk and ( {terms} )"  # the SDK substitutes only space-delimited @names
            async for entity in table.query_entities(query, parameters=parameters):
                row = MirrorRow.from_entity(dict(entity))
                found[row.user_id] = row
        return found

    async def unseen(self, seen: str, page_size: int = 1000) -> list[MirrorRow]:
        """Up to ``page_size`` live users a resync did not see (they were deleted while we could not tell)."""
        table = await self._table()
        query = "PartitionKey eq @pk and Deleted eq false and Seen ne @seen"
        rows: list[MirrorRow] = []
        self.ops += 1
        pages = table.query_entities(query, parameters={"pk": USERS, "seen": seen}, results_per_page=page_size)
        async for entity in pages:
            rows.append(MirrorRow.from_entity(dict(entity)))
            if len(rows) >= page_size:
                break
        return rows

    async def state(self) -> dict[str, Any]:
        return await self._get(STATE, "users") or {}

    # --- writes ------------------------------------------------------------------------------------

    async def put_users(self, rows: Sequence[MirrorRow], seen: str | None = None) -> None:
        await self._upsert([row.entity(seen) for row in rows])

    async def mark_published(self, rows: Sequence[MirrorRow]) -> None:
        entities = [{"PartitionKey": USERS, "RowKey": row.user_id, "Published": True} for row in rows]
        await self._upsert(entities, merge=True)

    async def mark_seen(self, user_ids: Iterable[str], seen: str) -> None:
        await self._upsert([{"PartitionKey": USERS, "RowKey": i, "Seen": seen} for i in set(user_ids)], merge=True)

    async def put_aliases(self, aliases: dict[str, str]) -> None:
        """Point each alias at its user (overwriting whoever had it: the newest state wins)."""
        entities = [
            {"PartitionKey": ALIASES, "RowKey": safe_key(name), "Alias": name[:1024], "UserId": user_id}
            for name, user_id in aliases.items()
        ]
        await self._upsert(entities)

    async def drop_aliases(self, aliases: dict[str, str]) -> None:
        """Delete each alias row that still points at the given user (another user may have taken it)."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._table()
        for name, user_id in aliases.items():
            entity = await self._get(ALIASES, safe_key(name))
            if entity is None or entity.get("UserId") != user_id:
                continue
            self.ops += 1
            try:
                etag = entity.metadata["etag"]
                await table.delete_entity(ALIASES, safe_key(name), etag=etag, match_condition=_if_match())
            except ResourceNotFoundError:
                continue

    async def merge_state(self, values: dict[str, Any]) -> None:
        await self._upsert([{"PartitionKey": STATE, "RowKey": "users", **values}], merge=True)

    async def swap_state(self, seen: dict[str, Any], values: dict[str, Any]) -> bool:
        """Merge ``values`` into the state row only if it is still the one ``seen`` (read by ``state()``):
        False when another instance wrote it meanwhile (so exactly one of racing signals enqueues a round)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        table = await self._table()
        entity = {"PartitionKey": STATE, "RowKey": "users", **values}
        etag = getattr(seen, "metadata", {}).get("etag")
        self.ops += 1
        try:
            if etag is None:
                await table.create_entity(entity)
            else:
                await table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    async def sweep_tombstones(self, older_than: datetime, limit: int = 10_000) -> int:
        """Delete tombstones (deleted users whose event went out) last written before ``older_than``.

        Kept until then so a late ``@removed`` or a replayed page still finds the user deleted; a row that
        changed since the query (the user came back) keeps its etag check and stays.
        """
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        table = await self._table()
        query = "PartitionKey eq @pk and Deleted eq true and Published eq true and Timestamp lt @before"
        self.ops += 1
        stale = [
            (str(entity["RowKey"]), entity.metadata["etag"])
            async for entity in table.query_entities(
                query, parameters={"pk": USERS, "before": older_than}, select=["RowKey"]
            )
        ][:limit]
        removed = 0
        for row_key, etag in stale:
            self.ops += 1
            try:
                await table.delete_entity(USERS, row_key, etag=etag, match_condition=_if_match())
            except (ResourceNotFoundError, ResourceModifiedError):
                continue
            removed += 1
        return removed

    # --- plumbing ----------------------------------------------------------------------------------

    async def _get(self, partition: str, row: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        self.ops += 1
        try:
            return await (await self._table()).get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    async def _upsert(self, entities: list[dict[str, Any]], *, merge: bool = False) -> None:
        from azure.data.tables import UpdateMode

        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        table = await self._table()
        for start in range(0, len(entities), BATCH):
            chunk = entities[start : start + BATCH]
            self.ops += 1
            if len(chunk) == 1:
                await table.upsert_entity(chunk[0], mode=mode)
            else:
                await table.submit_transaction([("upsert", e, {"mode": mode}) for e in chunk])


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified
