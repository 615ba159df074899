"""One delta round of the directory mirror: read what changed, compare it with the mirror, publish the
differences.

The round is the single writer of the mirror (the coordinator runs it under a lease). For each page:

1. the stored rows of the page's users are read (a few filtered queries);
2. each item is merged into its stored row (Graph sends an updated user as ``id`` plus the changed
   properties), shaped as the API serves it and hashed: the content version. An equal version is no news;
3. changed rows are written with ``Published = false`` and a new ``Seq``; a rename's old alias is dropped
   and its new alias written, all before the event goes out;
4. one event per changed row (``users.created`` / ``users.updated`` / ``users.deleted``) is published
   through the exactly-once dispatcher; its id is derived from (user, Seq, version), so a replayed page
   or an overlapping round publishes the same id (dropped as a duplicate) and two states never share one;
5. the rows are marked published and the page's resume point (``NextLink``) is saved.

A crash anywhere replays the page: rows already written show ``Published = false`` and publish the same
event id again. The first round fills the mirror and publishes nothing (the directory's existing state is
not news). A lost sync state (410) runs a full round in compare mode, so only real differences are
published; users the mirror has but the full round did not list were deleted in the gap.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.directory import USER_FIELDS, shape_user
from shared.errors import UnavailableError
from shared.events.model import Event
from shared.graph.delta import DeltaReader, DeltaResyncRequired, DeltaTarget
from shared.mirror.store import MirrorRow, MirrorStore, aliases_of, content_version
from shared.storage import hashed_key
from shared.subscriptions.clock import Clock, utcnow
from shared.telemetry import get_logger

log = get_logger("mirror.sync")

Publish = Callable[[Event], Awaitable[None]]
Change = Literal["created", "updated", "deleted"]
TARGET = DeltaTarget("users", select=USER_FIELDS)


@dataclass(frozen=True)
class SyncConfig:
    """``max_round_seconds``: a round pauses at a page boundary after this long (it continues from the
    saved page on the next run), so a large directory never meets the function timeout."""

    max_round_seconds: float = 240.0


@dataclass
class RoundResult:
    """What one round did."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    pages: int = 0
    baseline: bool = False
    resynced: bool = False
    paused: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def published(self) -> int:
        return self.created + self.updated + self.deleted


@dataclass(frozen=True)
class _Planned:
    row: MirrorRow
    change: Change
    drop: frozenset[str]
    add: frozenset[str]


class _Paused(Exception):
    pass


class MirrorSync:
    """Runs rounds; the caller holds the lease."""

    def __init__(
        self,
        reader: DeltaReader,
        store: MirrorStore,
        publish: Publish,
        *,
        clock: Clock = utcnow,
        config: SyncConfig | None = None,
    ) -> None:
        self._reader = reader
        self._store = store
        self._publish = publish
        self._clock = clock
        self.config = config or SyncConfig()

    async def run(self) -> RoundResult:
        """One round: the first fill, the changes since the last round, or the rest of a paused round."""
        state = await self._store.state()
        result = RoundResult(baseline=not state.get("Filled"))
        resync = state.get("Resync") or None
        link = state.get("NextLink") or state.get("DeltaLink") or None
        try:
            try:
                await self._walk(link, result, resync=resync)
            except DeltaResyncRequired:
                if result.baseline:  # a first fill whose page link expired starts over, still silently
                    if link is None:
                        raise
                    log.warning("the mirror's first fill lost its page link: starting it over")
                    await self._store.merge_state({"NextLink": ""})
                    await self._walk(None, result, resync=None)
                    return result
                log.warning("the mirror's delta link is no longer valid: running a full resync")
                resync = uuid.uuid4().hex
                await self._store.merge_state({"Resync": resync, "NextLink": ""})
                result.resynced = True
                await self._walk(None, result, resync=resync)
        except _Paused:
            result.paused = True
            log.info("mirror round paused after %d pages; it continues from the saved page", result.pages)
        return result

    async def _walk(self, link: str | None, result: RoundResult, *, resync: str | None) -> None:
        deadline = time.monotonic() + self.config.max_round_seconds
        pages = self._reader.pages(TARGET, link).__aiter__()
        while True:
            page = await anext(pages, None)
            if page is None:
                raise UnavailableError("a delta round ended without a deltaLink")
            result.pages += 1
            if result.baseline and resync is None:
                await self._fill(page.items)
            else:
                await self._apply(page.items, result, seen=resync)
            if page.delta_link is not None:
                if resync is not None:
                    await self._sweep_unseen(resync, result)
                await self._store.merge_state(
                    {
                        "DeltaLink": page.delta_link,
                        "NextLink": "",
                        "Resync": "",
                        "Filled": True,
                        "CompletedAt": self._clock(),
                    }
                )
                return
            await self._store.merge_state({"NextLink": page.next_link or ""})
            if time.monotonic() > deadline:
                raise _Paused()

    # --- pages -------------------------------------------------------------------------------------

    async def _fill(self, items: list[dict[str, Any]]) -> None:
        """The first fill: write rows and aliases, publish nothing."""
        rows: list[MirrorRow] = []
        aliases: dict[str, str] = {}
        for user_id, item in _latest(items).items():
            if "@removed" in item:
                continue
            user = shape_user({**_fields(item), "id": user_id})
            rows.append(MirrorRow(user_id, user, content_version(user), 1, published=True))
            aliases.update(dict.fromkeys(aliases_of(user), user_id))
        await self._store.put_users(rows)
        await self._store.put_aliases(aliases)

    async def _apply(self, items: list[dict[str, Any]], result: RoundResult, *, seen: str | None) -> None:
        latest = _latest(items)
        stored = await self._store.users(latest)
        planned: list[_Planned] = []
        unchanged: list[str] = []
        for user_id, item in latest.items():
            plan = _plan(user_id, item, stored.get(user_id))
            if plan is None:
                unchanged.append(user_id)
            else:
                planned.append(plan)
        result.unchanged += len(unchanged)
        await self._store.drop_aliases({name: p.row.user_id for p in planned for name in p.drop})
        await self._store.put_users([p.row for p in planned], seen)
        await self._store.put_aliases({name: p.row.user_id for p in planned for name in p.add})
        for plan in planned:
            event = self._event(plan)
            await self._publish(event)
            result.events.append(event.id)
            setattr(result, plan.change, getattr(result, plan.change) + 1)
        await self._store.mark_published([p.row for p in planned])
        if seen is not None and unchanged:
            await self._store.mark_seen(unchanged, seen)

    async def _sweep_unseen(self, resync: str, result: RoundResult) -> None:
        """After a full resync: users the mirror still has but Graph did not list were deleted meanwhile."""
        while True:
            gone = await self._store.unseen(resync, page_size=100)
            if not gone:
                return
            items = [{"id": row.user_id, "@removed": {"reason": "resync"}} for row in gone]
            await self._apply(items, result, seen=resync)

    def _event(self, plan: _Planned) -> Event:
        row = plan.row
        return Event(
            id=hashed_key(json.dumps(["mirror.v1", row.user_id, row.seq, plan.change, row.version])),
            type=f"users.{plan.change}",
            resource=f"Users/{row.user_id}",
            change_type=plan.change,
            subscription_id=None,
            tenant_id=None,
            user_id=row.user_id,
            message_id=None,
            received_at=self._clock(),
            source="delta",
            version=row.version,
        )


def _latest(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The page's items by (lower-cased) id, the last one winning; items without an id are skipped."""
    latest: dict[str, dict[str, Any]] = {}
    for item in items:
        user_id = item.get("id")
        if isinstance(user_id, str) and 0 < len(user_id) <= 64:
            latest[user_id.lower()] = item
        else:
            log.warning("skipped a users delta item without a usable id")
    return latest


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in USER_FIELDS if name in item and name != "id"}


def _plan(user_id: str, item: dict[str, Any], old: MirrorRow | None) -> _Planned | None:
    """What one item changes in the mirror (None: nothing)."""
    live = old is not None and not old.deleted
    if "@removed" in item:
        if old is None or (old.deleted and old.published):
            return None
        if old.deleted:  # written, event not yet out: publish the same version again
            return _Planned(old, "deleted", frozenset(), frozenset())
        row = MirrorRow(user_id, old.user, old.version, old.seq + 1, published=False, deleted=True, change="deleted")
        return _Planned(row, "deleted", frozenset(aliases_of(old.user)), frozenset())
    base = old.user if old is not None and live else {}
    user = shape_user({**base, **_fields(item), "id": user_id})
    version = content_version(user)
    if old is not None and live and version == old.version:
        if old.published:
            return None
        change: Change = "created" if old.change == "created" else "updated"
        return _Planned(old, change, frozenset(), frozenset(aliases_of(user)))
    seq = (old.seq if old is not None else 0) + 1
    change = "updated" if live else "created"
    row = MirrorRow(user_id, user, version, seq, published=False, change=change)
    before = aliases_of(old.user) if old is not None and live else set()
    return _Planned(row, change, frozenset(before - aliases_of(user)), frozenset(aliases_of(user)))
