"""Mailbox fleets: a desired-state entry that names a set of mailboxes (a group's members, or the tenant)
becomes, at each reconcile, one desired subscription per member mailbox.

Members are read from Graph (enabled accounts only; ``GraphGateway.list_fleet_users``). A member whose
mailbox Outlook does not serve (a 404 such as ``MailboxNotEnabledForRESTAPI``: no licence, or hosted
on-premises) is recorded with a backoff (``MailboxBackoff``), so reconciles do not ask Graph about it every
run; a member that leaves the set loses its subscription at the next reconcile.
"""

from __future__ import annotations

import contextlib
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


class FleetDirectory(Protocol):
    """Where a fleet's members come from (``shared.graph.gateway.GraphGateway``)."""

    async def list_fleet_users(self, group_id: str | None, *, transitive: bool = False) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Expansion:
    """The desired state with every fleet replaced by its members' entries.

    ``complete`` is False when some fleet's members could not be read: that run must remove nothing, or a
    Graph outage would unsubscribe the whole fleet. ``members`` counts each fleet's member mailboxes and
    ``fleet_resources`` names the per-member resources (the ones the mailbox backoff applies to)."""

    desired: tuple[DesiredSubscription, ...]
    complete: bool = True
    members: dict[str, int] = field(default_factory=dict)
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
    complete, counts, members = True, {}, set()
    for fleet in fleets:
        try:
            users = await directory.list_fleet_users(fleet.spec.group, transitive=fleet.spec.transitive)
        except AppError as error:
            log.warning(
                "members of %s could not be read: %s; nothing is removed this run", fleet.spec.resource, describe(error)
            )
            complete = False
            continue
        enabled = [str(u["id"]) for u in users if u.get("accountEnabled") is not False]
        counts[fleet.spec.resource] = len(enabled)
        for user_id in enabled:
            spec = fleet.spec.member(user_id)
            if spec.resource not in entries:
                entries[spec.resource] = DesiredSubscription(spec, fleet.change_types, fleet.delivery, fleet.with_data)
                members.add(spec.resource)
    return Expansion(tuple(entries.values()), complete, counts, frozenset(members))


@dataclass(frozen=True)
class AbsentMailbox:
    """A member resource Graph would not subscribe (its mailbox is not served), and when to try again."""

    resource: str
    reason: str
    attempts: int
    retry_at: datetime


class MailboxBackoff:
    """Members whose mailbox could not be subscribed, one Table row each: retried after 1 h, doubling to 24 h."""

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

    async def all(self) -> dict[str, AbsentMailbox]:
        """Every recorded member by resource (one query per reconcile, not one read per member)."""
        table = await self._table()
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": _ABSENT})
        found = [_absent(dict(row)) async for row in rows]
        return {row.resource: row for row in found}

    async def record(self, resource: str, reason: str, previous: AbsentMailbox | None, now: datetime) -> AbsentMailbox:
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

    async def clear(self, resource: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            await (await self._table()).delete_entity(_ABSENT, safe_key(resource))


def _absent(entity: dict[str, Any]) -> AbsentMailbox:
    return AbsentMailbox(
        resource=str(entity["Resource"]),
        reason=str(entity.get("Reason", "")),
        attempts=int(entity.get("Attempts", 1)),
        retry_at=entity["RetryAt"],
    )
