"""Delta catch-up: publish what changed on a resource while its subscription could not tell us.

One row per resource (table ``deltalinks``) keeps the resource's deltaLink (relative to ``GRAPH_BASE_URL``,
see ``shared.graph.delta``; older rows hold absolute links, rebased when read) and two times: ``RequestedAt``
(someone needs a catch-up: ``missed``, a recreated subscription) and ``ServedAt`` (when the last
successful catch-up started). A resource is pending while ``RequestedAt > ServedAt``, so a request that
arrives during a run is not lost; ``run_pending`` (called by the renewal timer) retries failed ones.

Choices, each deliberate:

- The first round of a resource is a baseline: it stores the deltaLink and publishes nothing (the
  resource's current state is not news, and downstream must not get a flood). Subscriptions take their
  baseline when they are created, so the first *catch-up* already has a link to start from.
- The new link is stored only after every change of the round was published: a crash replays the round
  instead of losing it. Event ids are derived from the round's starting link and the item, so a replay
  produces the same ids and the deduplicating dispatcher drops the repeats.
- Delta cannot tell created from updated: changes are ``*.updated``, removals ``*.deleted``.
- A lost sync state (410 / ``syncStateNotFound``) means a full round; its items are published as
  ``*.updated`` (``publish_on_resync``) because what changed in between is unknown; deletions in that gap
  cannot be seen.
- ``users/{id}`` has no delta of its own: its catch-up publishes one ``users.updated`` for the user.
- ``users/{id}/messages`` watches the whole mailbox but Outlook's delta is per folder: its catch-up
  covers the inbox only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import AppError, UnavailableError
from shared.events.model import Event, change_identity, event_type
from shared.graph.delta import DeltaReader, DeltaResyncRequired, DeltaTarget
from shared.names import DELTA_LINKS_TABLE
from shared.storage import Tables, hashed_key, safe_key
from shared.subscriptions.clock import Clock, utcnow
from shared.subscriptions.desired import ResourceSpec, parse_resource
from shared.subscriptions.leases import LeaseStore
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

log = get_logger("subscriptions.catchup")

Publish = Callable[[Event], Awaitable[None]]
_PARTITION = "delta"
NO_DELTA = "-"  # the "link" of a resource without a delta query (users/{id}): baseline taken


@dataclass(frozen=True)
class CatchupConfig:
    """Tunables of delta catch-up.

    - ``table`` ("deltalinks"): where deltaLinks and pending requests live.
    - ``publish_on_resync`` (True): after a lost sync state, publish every item of the full round as
      ``*.updated``; False re-baselines silently (no flood, but changes in the gap are lost).
    - ``lease`` (10 min): how long one worker may own a resource's round before another may take over.
    """

    table: str = DELTA_LINKS_TABLE
    publish_on_resync: bool = True
    lease: timedelta = timedelta(minutes=10)
    # A publishing round longer than this pauses at a page boundary (progress is saved after every page),
    # so a large mailbox or directory finishes over several runs instead of being killed at functionTimeout.
    max_round_seconds: float = 240.0


@dataclass(frozen=True)
class CatchupResult:
    """What one catch-up did for one resource."""

    resource: str
    published: int = 0
    baseline: bool = False  # the round only established the starting point
    resynced: bool = False  # the stored link was gone and a full round ran
    busy: bool = False  # another worker holds this resource's catch-up; it stays pending
    paused: bool = False  # the round hit max_round_seconds; it continues from the saved page next run


class _RoundPaused(Exception):
    """A publishing round stopped at a page boundary; ``published`` items are done."""

    def __init__(self, published: int) -> None:
        super().__init__(f"paused after {published} published items")
        self.published = published


def delta_target(spec: ResourceSpec) -> DeltaTarget | None:
    """The delta round that covers a resource (None: ``users/{id}``, which has no delta of its own)."""
    if spec.kind == "users":
        return DeltaTarget("users")
    if spec.kind == "messages":
        return DeltaTarget("messages", spec.user, "inbox")
    if spec.kind == "folder_messages":
        return DeltaTarget("messages", spec.user, spec.folder or "inbox")
    return None


class DeltaCatchup:
    """Baseline, request, run and forget catch-ups per resource; events go to ``publish``."""

    def __init__(
        self,
        reader: DeltaReader,
        tables: Tables,
        leases: LeaseStore,
        publish: Publish,
        *,
        clock: Clock = utcnow,
        config: CatchupConfig | None = None,
    ) -> None:
        self._reader = reader
        self._tables = tables
        self._leases = leases
        self._publish = publish
        self._clock = clock
        self.config = config or CatchupConfig()

    async def _table(self) -> TableClient:
        return await self._tables.get(self.config.table)

    async def baseline(self, spec: ResourceSpec) -> CatchupResult:
        """Store a starting deltaLink if the resource has none (called when a subscription is created)."""
        row = await self._row(spec)
        if row is not None and row.get("DeltaLink"):
            return CatchupResult(spec.resource)
        return await self.catch_up(spec)

    async def request(self, spec: ResourceSpec) -> None:
        """Mark the resource as needing a catch-up (kept until a run that started later succeeds)."""
        await self._merge(spec, {"RequestedAt": self._clock()})

    async def catch_up(self, spec: ResourceSpec) -> CatchupResult:
        """Run one round for the resource now (under its lease); raises if Graph or publishing fails."""
        await self.request(spec)
        async with self._leases.hold(f"delta:{spec.resource}", self.config.lease) as held:
            if not held:
                return CatchupResult(spec.resource, busy=True)
            started = self._clock()
            row = await self._row(spec) or {}
            try:
                result, link = await self._round(spec, row.get("DeltaLink") or None, started)
            except _RoundPaused as paused:  # progress is saved; the request stays pending for the next run
                log.info("delta catch-up of %s paused after %d published", spec.resource, paused.published)
                return CatchupResult(spec.resource, published=paused.published, paused=True)
            await self._merge(spec, {"DeltaLink": link, "ServedAt": started, "LastError": None})
        log.info(
            "delta catch-up of %s: %d published%s%s",
            spec.resource,
            result.published,
            " (baseline)" if result.baseline else "",
            " (full resync)" if result.resynced else "",
        )
        return result

    async def run_pending(self) -> list[CatchupResult]:
        """Catch up every resource with an unserved request; a failure is logged, recorded and retried
        on the next call rather than stopping the others."""
        results: list[CatchupResult] = []
        for row in await self._rows():
            requested, served = row.get("RequestedAt"), row.get("ServedAt")
            if requested is None or (served is not None and served >= requested):
                continue
            spec = parse_resource(row["Resource"])
            try:
                results.append(await self.catch_up(spec))
            except Exception as error:
                log.warning("delta catch-up of %s failed; retried on the next run", spec.resource, exc_info=True)
                await self._merge(spec, {"LastError": _describe(error)})
        return results

    async def forget(self, spec: ResourceSpec) -> None:
        """Drop the resource's link and requests (no subscription watches it any more)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await (await self._table()).delete_entity(_PARTITION, safe_key(spec.resource))
        except ResourceNotFoundError:
            return

    async def pending(self) -> list[str]:
        """Resources waiting for a catch-up (for status views and tests)."""
        return [
            row["Resource"]
            for row in await self._rows()
            if row.get("RequestedAt") is not None
            and (row.get("ServedAt") is None or row["ServedAt"] < row["RequestedAt"])
        ]

    # --- one round ---------------------------------------------------------------------------------

    async def _round(self, spec: ResourceSpec, link: str | None, started: datetime) -> tuple[CatchupResult, str]:
        """Run the round from ``link`` (None: baseline); a lost sync state becomes a full round."""
        target = delta_target(spec)
        if target is None:  # users/{id}: no delta; "it may have changed" is all there is to say
            if link is None:
                return CatchupResult(spec.resource, baseline=True), NO_DELTA
            await self._publish(self._event(spec, spec.user or "", removed=False, origin=started.isoformat()))
            return CatchupResult(spec.resource, published=1), NO_DELTA
        if link is None:
            new_link, _ = await self._walk(spec, target, None, publish=False)
            return CatchupResult(spec.resource, baseline=True), new_link
        try:
            new_link, published = await self._walk(spec, target, link, publish=True)
            return CatchupResult(spec.resource, published=published), new_link
        except DeltaResyncRequired:
            log.warning("the delta link of %s is no longer valid: running a full resync", spec.resource)
        new_link, published = await self._walk(
            spec, target, None, publish=self.config.publish_on_resync, origin=f"resync:{link}"
        )
        return CatchupResult(spec.resource, published=published, resynced=True), new_link

    async def _walk(
        self, spec: ResourceSpec, target: DeltaTarget, link: str | None, *, publish: bool, origin: str | None = None
    ) -> tuple[str, int]:
        """Follow the round to its deltaLink, publishing each change when asked; returns (link, count).

        A users round that publishes nothing needs no items: Graph's ``$deltatoken=latest`` gives the link.
        """
        latest = not publish and target.kind == "users"
        published = 0
        new_link: str | None = None
        deadline = time.monotonic() + self.config.max_round_seconds
        async for page in self._reader.pages(target, link, latest=latest):
            if publish:
                for item in page.items:
                    event = self._item_event(spec, target, item, origin or link or "")
                    if event is not None:
                        await self._publish(event)
                        published += 1
                if page.next_link is not None:  # everything before this point is published: resume here
                    await self._merge(spec, {"DeltaLink": page.next_link})
                    if time.monotonic() > deadline:
                        raise _RoundPaused(published)
            new_link = page.delta_link
        if new_link is None:
            raise UnavailableError("a delta round ended without a deltaLink")
        return new_link, published

    def _item_event(self, spec: ResourceSpec, target: DeltaTarget, item: dict[str, Any], origin: str) -> Event | None:
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            log.warning("skipped a delta item without an id in %s", spec.resource)
            return None
        removed = "@removed" in item
        etag = item.get("@odata.etag")
        if isinstance(etag, str) and etag:
            # A versioned item gets the identity a live notification of the same version gets, so the
            # overlap between catch-up and notifications is deduplicated across both sources.
            users = spec.kind in ("users", "user")
            identity = change_identity(
                "users" if users else "messages",
                item_id,
                "deleted" if removed else "updated",
                etag=etag,
                received_at=self._clock(),
            )
            return replace(self._event(spec, item_id, removed=removed, origin=origin), id=identity)
        identity = json.dumps(item, sort_keys=True, default=str)
        return self._event(spec, item_id, removed=removed, origin=f"{origin}\n{identity}")

    def _event(self, spec: ResourceSpec, item_id: str, *, removed: bool, origin: str) -> Event:
        """The event for one changed item; its id is stable for the same round and item (replays dedupe)."""
        change = "deleted" if removed else "updated"
        users = spec.kind in ("users", "user")
        return Event(
            id=hashed_key(json.dumps([spec.resource, change, item_id, origin])),
            type=event_type("users" if users else "messages", change),
            resource=f"Users/{item_id}" if users else f"Users/{spec.user}/Messages/{item_id}",
            change_type=change,
            subscription_id=None,
            tenant_id=None,
            user_id=item_id if users else spec.user,
            message_id=None if users else item_id,
            received_at=self._clock(),
            source="delta",
        )

    # --- rows --------------------------------------------------------------------------------------

    async def _row(self, spec: ResourceSpec) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return dict(await (await self._table()).get_entity(_PARTITION, safe_key(spec.resource)))
        except ResourceNotFoundError:
            return None

    async def _rows(self) -> list[dict[str, Any]]:
        table = await self._table()
        return [dict(e) async for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": _PARTITION})]

    async def _merge(self, spec: ResourceSpec, values: dict[str, Any]) -> None:
        """Write some columns of the resource's row, leaving the others (a merge never loses a request)."""
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": _PARTITION, "RowKey": safe_key(spec.resource), "Resource": spec.resource, **values}
        await (await self._table()).upsert_entity(entity, mode=UpdateMode.MERGE)


def _describe(error: Exception) -> str:
    """A short, secret-free description for ``LastError`` columns."""
    message = error.message if isinstance(error, AppError) else ""
    return f"{type(error).__name__}: {message}"[:300]
