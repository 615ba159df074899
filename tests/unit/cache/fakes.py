"""Test doubles for the cache: a controllable clock and an in-memory TableClient with real semantics.

``FakeTableClient`` implements the calls the L2 tier makes with Table Storage's concurrency rules
(insert of an existing key → 409, ETag mismatch → 412, missing → 404), so the tier's own code runs in
unit tests without I/O. ``down = True`` makes every call fail like an unreachable endpoint.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.data.tables import TableEntity

FORBIDDEN_KEY_CHARS = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


def assert_valid_key(key: str) -> None:
    """What Table Storage demands of PartitionKey and RowKey."""
    assert key, "empty key"
    assert len(key) <= 1024, f"key of {len(key)} characters"
    assert not FORBIDDEN_KEY_CHARS & set(key), f"forbidden character in {key!r}"


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTableClient:
    """One table in memory. Every call yields to the loop once, like a network round trip would."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.calls = 0
        self.down = False
        self._etags: Iterator[int] = itertools.count(1)

    async def _enter(self) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise ServiceRequestError("connection refused")

    def _store(self, row: Mapping[str, Any]) -> str:
        for name in ("PartitionKey", "RowKey"):
            assert_valid_key(row[name])
        etag = f'W/"{next(self._etags)}"'
        self.rows[(row["PartitionKey"], row["RowKey"])] = (dict(row), etag)
        return etag

    def _check(self, pk: str, rk: str, etag: str | None, match_condition: MatchConditions | None) -> None:
        current = self.rows.get((pk, rk))
        if current is None:
            raise ResourceNotFoundError("entity not found")
        if match_condition == MatchConditions.IfNotModified and current[1] != etag:
            raise ResourceModifiedError("condition not met")

    async def get_entity(self, partition_key: str, row_key: str) -> TableEntity:
        await self._enter()
        current = self.rows.get((partition_key, row_key))
        if current is None:
            raise ResourceNotFoundError("entity not found")
        entity = TableEntity(current[0])
        entity._metadata = {"etag": current[1], "timestamp": None}
        return entity

    async def create_entity(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        await self._enter()
        if (entity["PartitionKey"], entity["RowKey"]) in self.rows:
            raise ResourceExistsError("entity already exists")
        return {"etag": self._store(entity)}

    async def update_entity(
        self,
        entity: Mapping[str, Any],
        mode: str = "merge",
        *,
        etag: str | None = None,
        match_condition: MatchConditions | None = None,
    ) -> dict[str, Any]:
        await self._enter()
        self._check(entity["PartitionKey"], entity["RowKey"], etag, match_condition)
        assert mode == "replace"
        return {"etag": self._store(entity)}

    async def upsert_entity(self, entity: Mapping[str, Any], mode: str = "merge") -> dict[str, Any]:
        await self._enter()
        assert mode == "replace"
        return {"etag": self._store(entity)}

    async def delete_entity(
        self,
        partition_key: str,
        row_key: str,
        *,
        etag: str | None = None,
        match_condition: MatchConditions | None = None,
    ) -> None:
        await self._enter()
        if (partition_key, row_key) not in self.rows:
            return  # Table Storage answers 404; the SDK's delete_entity swallows it
        self._check(partition_key, row_key, etag, match_condition)
        del self.rows[(partition_key, row_key)]

    def lease_rows(self) -> list[dict[str, Any]]:
        return [row for row, _ in self.rows.values() if row["RowKey"].startswith("l~")]
