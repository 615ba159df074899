"""Where breaker state lives: a tiny conditional-write row store with two interchangeable backends.

The breaker needs only rows addressed by (partition, row) with ETags: read, insert (conflict if it
exists), replace-if-unchanged (conflict on a stale ETag), upsert, scan a partition, delete-if-unchanged,
plus the time of the shared clock. Like pybreaker's state storage, all breaker logic sits above this
interface, so the same state machine runs on Azure Table Storage (``TableBreakerStore``: state shared by
every instance) and in memory (``MemoryBreakerStore``: unit tests and the fallback while Storage is down).

Clock: times stored in rows (opened-at, open-until, lease expiry, counted outcomes) are *Table service
time*, so instances with skewed local clocks agree on when a breaker opens and when a probe lease expires.
``ServerClock`` estimates it from what Table responses carry. Each response bounds the offset between
local monotonic time and service time, and the bounds of all responses are intersected:

- the ``Date`` header of any response (1-second resolution): ``date - received <= offset < date + 1 - sent``;
- the ``ETag`` of a successful write, which is ``W/"datetime'<commit time, 100 ns>'"`` on Azure and
  Azurite: ``commit - received <= offset <= commit - sent``, i.e. the estimate is as good as one round trip
  after the first write. ETags are opaque by contract, so one that does not parse is simply not used and
  the ``Date`` bounds still hold.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import unquote

from shared.errors import StorageUnavailableError

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineResponse
    from azure.data.tables import TableEntity
    from azure.data.tables.aio import TableClient

Value = str | int | float
Values = Mapping[str, Value]
_T = TypeVar("_T")
_ROW_NOT_FOUND = "ResourceNotFound"
_ETAG_TIME = re.compile(r"W/\"datetime'([0-9T:.%A-Fa-f-]+Z?)'\"")


class StoreConflict(Exception):
    """A conditional write lost: the row exists (insert) or changed since it was read (replace)."""


class StoreUnavailable(StorageUnavailableError):
    """The store could not be reached or answered with an unexpected error."""


@dataclass(frozen=True)
class Row:
    key: str
    values: Values
    etag: str


@dataclass
class StoreStats:
    """Round trips made by one store (one per instance), and how many conditional writes lost (409/412)."""

    reads: int = 0
    writes: int = 0
    conflicts: int = 0


class BreakerStore(Protocol):
    """Conditional row operations plus the shared clock; see the module docstring."""

    stats: StoreStats

    def now(self) -> float:
        """Seconds since the epoch on the clock every instance sharing this store agrees on."""
        ...

    async def read(self, partition: str, key: str) -> Row | None: ...

    async def insert(self, partition: str, key: str, values: Values) -> str:
        """Create the row; its ETag. ``StoreConflict`` if it exists."""
        ...

    async def replace(self, partition: str, key: str, values: Values, etag: str) -> str:
        """Overwrite the row if it still has ``etag``; the new ETag. ``StoreConflict`` otherwise."""
        ...

    async def upsert(self, partition: str, key: str, values: Values) -> None: ...

    async def scan(self, partition: str) -> list[Row]: ...

    async def delete(self, partition: str, key: str, etag: str) -> None:
        """Delete the row if it still has ``etag``; a missing or changed row is left alone."""
        ...


class MemoryBreakerStore:
    """In-process rows with the same conditional semantics; ``clock`` is the shared clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.stats = StoreStats()
        self._clock = clock
        self._rows: dict[tuple[str, str], Row] = {}
        self._etags = itertools.count(1)

    def now(self) -> float:
        return self._clock()

    def _put(self, partition: str, key: str, values: Values) -> str:
        self.stats.writes += 1
        etag = f"m{next(self._etags)}"
        self._rows[partition, key] = Row(key, dict(values), etag)
        return etag

    def _conflict(self, message: str) -> StoreConflict:
        self.stats.conflicts += 1
        return StoreConflict(message)

    async def read(self, partition: str, key: str) -> Row | None:
        self.stats.reads += 1
        return self._rows.get((partition, key))

    async def insert(self, partition: str, key: str, values: Values) -> str:
        if (partition, key) in self._rows:
            raise self._conflict(f"{partition}/{key} exists")
        return self._put(partition, key, values)

    async def replace(self, partition: str, key: str, values: Values, etag: str) -> str:
        current = self._rows.get((partition, key))
        if current is None or current.etag != etag:
            raise self._conflict(f"{partition}/{key} changed")
        return self._put(partition, key, values)

    async def upsert(self, partition: str, key: str, values: Values) -> None:
        self._put(partition, key, values)

    async def scan(self, partition: str) -> list[Row]:
        self.stats.reads += 1
        return [row for (part, _), row in self._rows.items() if part == partition]

    async def delete(self, partition: str, key: str, etag: str) -> None:
        current = self._rows.get((partition, key))
        if current is not None and current.etag != etag:
            self.stats.conflicts += 1
        elif current is not None:
            self.stats.writes += 1
            del self._rows[partition, key]


@dataclass
class _Bounds:
    """An interval known to contain the clock offset, narrowed by each consistent observation."""

    low: float = -math.inf
    high: float = math.inf

    @property
    def known(self) -> bool:
        return self.low > -math.inf

    def narrow(self, low: float, high: float) -> None:
        if max(low, self.low) <= min(high, self.high):
            self.low, self.high = max(low, self.low), min(high, self.high)
        else:  # contradicts what we knew (local clock drift, service clock step): start over from it
            self.low, self.high = low, high


@dataclass
class ServerClock:
    """Table service time estimated from response ``Date`` headers and write ETags (see module docstring).

    The two sources are kept apart (on Azure, front ends stamp ``Date`` and partition servers stamp ETags):
    write ETags decide once one was seen, ``Date`` headers until then, the local wall clock before either.
    """

    local: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _dates: _Bounds = field(default_factory=_Bounds, init=False)
    _writes: _Bounds = field(default_factory=_Bounds, init=False)

    @property
    def synced(self) -> bool:
        return self._dates.known or self._writes.known

    def _best(self) -> _Bounds:
        return self._writes if self._writes.known else self._dates

    @property
    def offset(self) -> float:
        """Service time minus local monotonic time (the local wall clock until a response was seen)."""
        best = self._best()
        return (best.low + best.high) / 2 if best.known else self.wall() - self.local()

    @property
    def uncertainty(self) -> float:
        """Half the width of the offset interval: how far ``now()`` may be off (inf before any response)."""
        best = self._best()
        return (best.high - best.low) / 2

    def now(self) -> float:
        return self.local() + self.offset

    def observe(self, date_header: str | None, sent: float, received: float) -> None:
        """Narrow the offset with a response's ``Date`` (sent at ``sent``, received at ``received``, local)."""
        date = _parse_http_date(date_header)
        if date is not None:
            self._dates.narrow(date - received, date + 1.0 - sent)

    def observe_write(self, etag: str | None, sent: float, received: float) -> None:
        """Narrow the offset with the commit time in a successful write's ETag, if it has one."""
        match = _ETAG_TIME.fullmatch(etag or "")
        if match is None:
            return
        try:  # 7 fractional digits on Azure; datetime keeps 6
            committed = datetime.fromisoformat(unquote(match[1]).rstrip("Z")[:26] + "+00:00").timestamp()
        except ValueError:
            return
        self._writes.narrow(committed - received, committed - sent)


def _parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class TableBreakerStore:
    """Rows in one Azure table (async ``TableClient``, injected and owned by the caller).

    Every operation is bounded by ``timeout`` and maps Storage failures to ``StoreUnavailable``, so no
    azure exception reaches the breaker's callers. Conflicts are 409 (insert) and 412 (stale ETag).
    """

    def __init__(
        self,
        table: TableClient | Callable[[], Awaitable[TableClient]],
        *,
        timeout: float = 2.0,
        clock: ServerClock | None = None,
    ) -> None:
        """``table`` may be a getter: the table is then opened (and created) on the first operation, so
        building the store never touches Storage and an outage at that moment is a ``StoreUnavailable``
        handled by the breaker's storage-outage policy, like any later one."""
        self.stats = StoreStats()
        self.clock = clock or ServerClock()
        self._open_table = table if callable(table) else None
        self._table: TableClient = table if not callable(table) else cast("TableClient", None)
        self._timeout = timeout

    def now(self) -> float:
        return self.clock.now()

    async def _run(
        self, op: Callable[[Callable[[PipelineResponse[Any, Any]], None]], Awaitable[_T]], *, write: bool = False
    ) -> _T:
        from azure.core.exceptions import AzureError

        sent = self.clock.local()

        def hook(response: PipelineResponse[Any, Any]) -> None:
            received, http = self.clock.local(), response.http_response
            self.clock.observe(http.headers.get("Date"), sent, received)
            if write and 200 <= http.status_code < 300:  # a read's ETag is the row's last write, not now
                self.clock.observe_write(http.headers.get("ETag"), sent, received)

        try:
            async with asyncio.timeout(self._timeout):
                if self._open_table is not None:
                    self._table = await self._open_table()
                    self._open_table = None
                return await op(hook)
        except (AzureError, OSError, TimeoutError, StorageUnavailableError) as error:
            status = getattr(error, "status_code", None)
            # 404 on a row we meant to replace: it was deleted since we read it, a conflict like 412.
            if status in (409, 412) or (status == 404 and getattr(error, "error_code", None) == _ROW_NOT_FOUND):
                self.stats.conflicts += 1
                raise StoreConflict(str(status)) from error
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error

    @staticmethod
    def _entity(partition: str, key: str, values: Values) -> dict[str, Value]:
        return {**values, "PartitionKey": partition, "RowKey": key}

    @staticmethod
    def _row(entity: TableEntity) -> Row:
        # Int64 properties come back wrapped in EntityProperty; the breaker wants plain values.
        values = {k: getattr(v, "value", v) for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
        return Row(str(entity["RowKey"]), values, str(entity.metadata["etag"]))

    async def read(self, partition: str, key: str) -> Row | None:
        from azure.core.exceptions import ResourceNotFoundError

        self.stats.reads += 1

        async def get(hook: Callable[[PipelineResponse[Any, Any]], None]) -> Row | None:
            try:
                entity = await self._table.get_entity(partition, key, raw_response_hook=hook)
            except ResourceNotFoundError as error:
                if (
                    getattr(error, "error_code", None) != _ROW_NOT_FOUND
                ):  # e.g. TableNotFound: the store is broken, not empty
                    raise
                return None
            return self._row(entity)

        return await self._run(get)

    async def insert(self, partition: str, key: str, values: Values) -> str:
        self.stats.writes += 1
        entity = self._entity(partition, key, values)
        meta = await self._run(lambda hook: self._table.create_entity(entity, raw_response_hook=hook), write=True)
        return str(meta["etag"])

    async def replace(self, partition: str, key: str, values: Values, etag: str) -> str:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        self.stats.writes += 1
        entity = self._entity(partition, key, values)
        meta = await self._run(
            lambda hook: self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                raw_response_hook=hook,
            ),
            write=True,
        )
        return str(meta["etag"])

    async def upsert(self, partition: str, key: str, values: Values) -> None:
        from azure.data.tables import UpdateMode

        self.stats.writes += 1
        entity = self._entity(partition, key, values)
        await self._run(
            lambda hook: self._table.upsert_entity(entity, mode=UpdateMode.REPLACE, raw_response_hook=hook),
            write=True,
        )

    async def scan(self, partition: str) -> list[Row]:
        self.stats.reads += 1

        async def query(hook: Callable[[PipelineResponse[Any, Any]], None]) -> list[Row]:
            pages = self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, raw_response_hook=hook
            )
            return [self._row(entity) async for entity in pages]

        return await self._run(query)

    async def delete(self, partition: str, key: str, etag: str) -> None:
        from azure.core import MatchConditions

        self.stats.writes += 1
        try:
            await self._run(
                lambda hook: self._table.delete_entity(
                    partition, key, etag=etag, match_condition=MatchConditions.IfNotModified, raw_response_hook=hook
                )
            )
        except StoreConflict:
            return
