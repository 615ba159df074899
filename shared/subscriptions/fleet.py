"""Mailbox fleets: a desired-state entry that names a set of mailboxes (a group's members, or the tenant)
becomes, at each reconcile, one desired subscription per member mailbox.

Members are read from Graph (enabled accounts only; ``GraphGateway.list_fleet_users``). A member whose
mailbox Outlook does not serve (a 404 such as ``MailboxNotEnabledForRESTAPI``: no licence, or hosted
on-premises) is recorded with a backoff (``FleetStore``), so reconciles do not ask Graph about it every
run; a member that leaves the set loses its subscription at the next reconcile.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import AppError
from shared.names import FLEET_TABLE
from shared.storage import Tables, safe_key
from shared.subscriptions.desired import DesiredSubscription
from shared.subscriptions.steps import describe
from shared.telemetry import get_logger

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

log = get_logger("subscriptions.fleet")

_ABSENT = "absent"
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SUMMARY = "summary"


class FleetDirectory(Protocol):
    """Where a fleet's members come from (``shared.graph.gateway.GraphGateway``)."""

    async def list_fleet_users(self, group_id: str | None, *, transitive: bool = False) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Expansion:
    """The desired state with every fleet replaced by its members' entries.

    ``complete`` is False when some fleet's members could not be read: that run must remove nothing, or a
    Graph outage would unsubscribe the whole fleet. ``members`` names each fleet's member resources (a
    mailbox two fleets name counts for both) and ``fleet_resources`` those the fleets own (the ones the
    mailbox backoff applies to: a fixed entry wins a mailbox and keeps its ordinary handling)."""

    desired: tuple[DesiredSubscription, ...]
    complete: bool = True
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fleet_resources: frozenset[str] = frozenset()


async def expand(desired: Sequence[DesiredSubscription], directory: FleetDirectory | None) -> Expansion:
    """Fixed entries first, then each fleet's members in order; a mailbox named twice keeps the first entry
    (a fixed entry wins over a fleet, an earlier fleet over a later one)."""
    fleets = [d for d in desired if d.spec.is_fleet]
    entries = {d.spec.resource: d for d in desired if not d.spec.is_fleet}
    if not fleets:
        return Expansion(tuple(entries.values()))
    if directory is None:
        raise RuntimeError("a mailbox fleet needs a directory to read its members from")
    complete, members, owned = True, {}, set()
    for fleet in fleets:
        try:
            users = await directory.list_fleet_users(fleet.spec.group, transitive=fleet.spec.transitive)
        except AppError as error:
            log.warning(
                "members of %s could not be read: %s; nothing is removed this run", fleet.spec.resource, describe(error)
            )
            complete = False
            continue
        ids = [str(u["id"]) for u in users if u.get("accountEnabled") is not False]
        odd = [i for i in ids if not _GUID.fullmatch(i)]
        if odd:  # a user id goes into a subscription's resource and Table keys: only Graph's GUIDs do
            log.warning("members of %s: %d ids that are not GUIDs were skipped", fleet.spec.resource, len(odd))
        specs = [fleet.spec.member(i) for i in ids if _GUID.fullmatch(i)]
        members[fleet.spec.resource] = tuple(spec.resource for spec in specs)
        for spec in specs:
            if spec.resource not in entries:
                entries[spec.resource] = DesiredSubscription(spec, fleet.change_types, fleet.delivery, fleet.with_data)
                owned.add(spec.resource)
    return Expansion(tuple(entries.values()), complete, members, frozenset(owned))


@dataclass(frozen=True)
class AbsentMailbox:
    """A member resource Graph would not subscribe (its mailbox is not served), and when to try again."""

    resource: str
    reason: str
    attempts: int
    retry_at: datetime


@dataclass(frozen=True)
class FleetSummary:
    """One fleet as its last complete reconcile left it (what ``/api/status`` shows without calling Graph)."""

    fleet: str
    members: int
    subscribed: int
    no_mailbox: int
    failed: int
    busy: int
    reconciled_at: datetime


class FleetStore:
    """The fleet table: members whose mailbox could not be subscribed (retried after 1 h, doubling to 24 h),
    and each fleet's summary of its last reconcile."""

    def __init__(
        self,
        tables: Tables,
        *,
        table: str = FLEET_TABLE,
        first: timedelta = timedelta(hours=1),
        longest: timedelta = timedelta(hours=24),
    ) -> None:
        self._tables = tables
        self._table_name = table
        self._first = first
        self._longest = longest

    async def _table(self) -> TableClient:
        return await self._tables.get(self._table_name)

    async def absent(self) -> dict[str, AbsentMailbox]:
        """Every recorded member by resource (one query per reconcile, not one read per member)."""
        table = await self._table()
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": _ABSENT})
        found = [_absent(dict(row)) async for row in rows]
        return {row.resource: row for row in found}

    async def record_absent(
        self, resource: str, reason: str, previous: AbsentMailbox | None, now: datetime
    ) -> AbsentMailbox:
        attempts = (previous.attempts if previous else 0) + 1
        wait = min(self._first * 2 ** (attempts - 1), self._longest)
        row = AbsentMailbox(resource, reason[:200], attempts, now + wait)
        entity = {
            "PartitionKey": _ABSENT,
            "RowKey": safe_key(resource),
            "Resource": resource,
            "Reason": row.reason,
            "Attempts": attempts,
            "RetryAt": row.retry_at,
        }
        await (await self._table()).upsert_entity(entity)
        return row

    async def clear_absent(self, resource: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            await (await self._table()).delete_entity(_ABSENT, safe_key(resource))

    async def save_summary(self, summary: FleetSummary) -> None:
        entity = {
            "PartitionKey": _SUMMARY,
            "RowKey": safe_key(summary.fleet),
            "Fleet": summary.fleet,
            "Members": summary.members,
            "Subscribed": summary.subscribed,
            "NoMailbox": summary.no_mailbox,
            "Failed": summary.failed,
            "Busy": summary.busy,
            "ReconciledAt": summary.reconciled_at,
        }
        await (await self._table()).upsert_entity(entity)

    async def summaries(self) -> list[FleetSummary]:
        table = await self._table()
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": _SUMMARY})
        return [
            FleetSummary(
                fleet=str(row["Fleet"]),
                members=int(row.get("Members", 0)),
                subscribed=int(row.get("Subscribed", 0)),
                no_mailbox=int(row.get("NoMailbox", 0)),
                failed=int(row.get("Failed", 0)),
                busy=int(row.get("Busy", 0)),
                reconciled_at=row["ReconciledAt"],
            )
            async for row in rows
        ]


def _absent(entity: dict[str, Any]) -> AbsentMailbox:
    return AbsentMailbox(
        resource=str(entity["Resource"]),
        reason=str(entity.get("Reason", "")),
        attempts=int(entity.get("Attempts", 1)),
        retry_at=entity["RetryAt"],
    )
