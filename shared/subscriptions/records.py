"""The Table-backed registry of our Graph subscriptions (the record store of ``shared.subscriptions``), and
the webhook's cached clientState lookup (the webhook sees only its ``ClientStateSource`` protocol).

The table is the source of truth (every scaled-out instance sees the same subscriptions); the webhook
only keeps a short-lived in-process copy of each lookup, hits and misses alike, so a hot webhook costs a
dict lookup instead of a table read per POST. Writes through this registry refresh the local copy at
once; other instances see them when their copy expires (``RegistryConfig.cache_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from shared.concurrency import gather_bounded
from shared.names import SUBSCRIPTIONS_TABLE
from shared.secret import Secret
from shared.storage import Tables, safe_key, storage_call

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

SubscriptionStatus = Literal["pending", "active", "reauthorization_required", "removed", "expired", "failed"]
_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)
_PARTITION = "subscription"  # a few hundred rows at most: one partition lists them in one query


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry lives and how long the webhook trusts its in-process copy."""

    table: str = SUBSCRIPTIONS_TABLE
    cache_seconds: float = 30.0  # how stale another instance's view of a change may be
    # Misses are not cached by default: a subscription created a moment ago (by any instance) must be known
    # to every instance at once; random ids are bounded per POST (max_lookups_per_post) instead.
    miss_cache_seconds: float = 0.0
    max_cached: int = 10_000  # bounds memory when someone posts random subscription ids
    lookup_concurrency: int = 16  # table reads in flight for one POST's cache misses
    max_lookups_per_post: int = 32  # Graph batches a few subscriptions per POST; more unknown ids are refused
    lookup_timeout_seconds: float = 1.0  # the webhook must answer Graph within ~3 s, persisting included


@dataclass(frozen=True)
class SubscriptionRecord:
    """One Graph subscription we own. ``client_state`` is a ``Secret``: never in repr or logs."""

    id: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    client_state: Secret = field(compare=False)
    expiration: datetime
    created_at: datetime
    lifecycle_url: str | None = None
    renewed_at: datetime | None = None
    status: SubscriptionStatus = "active"
    last_error: str | None = None
    with_data: bool = False  # rich notifications: Graph encrypts the resource into each notification
    certificate_id: str | None = None  # the encryptionCertificateId Graph was last given (rotation)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": _PARTITION,
            "RowKey": safe_key(self.id),
            "SubscriptionId": self.id,
            "Resource": self.resource,
            "ChangeTypes": ",".join(self.change_types),
            "NotificationUrl": self.notification_url,
            "LifecycleUrl": self.lifecycle_url,
            "ClientState": self.client_state.reveal(),
            "Expiration": self.expiration,
            "CreatedAt": self.created_at,
            "RenewedAt": self.renewed_at,
            "Status": self.status,
            "LastError": self.last_error,
            "WithData": self.with_data,
            "CertificateId": self.certificate_id,
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> SubscriptionRecord:
        status = entity.get("Status")
        return cls(
            id=entity["SubscriptionId"],
            resource=entity["Resource"],
            change_types=tuple(t for t in entity["ChangeTypes"].split(",") if t),
            notification_url=entity["NotificationUrl"],
            client_state=Secret(entity["ClientState"]),
            expiration=entity["Expiration"],
            created_at=entity["CreatedAt"],
            lifecycle_url=entity.get("LifecycleUrl"),
            renewed_at=entity.get("RenewedAt"),
            status=cast(SubscriptionStatus, status) if status in _STATUSES else "failed",
            last_error=entity.get("LastError"),
            with_data=entity.get("WithData") is True,
            certificate_id=entity.get("CertificateId"),
        )


class SubscriptionRegistry:
    """get/upsert/delete/list subscription records, plus ``client_state`` for the webhook (cached)."""

    def __init__(
        self, tables: Tables, config: RegistryConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tables = tables
        self._config = config or RegistryConfig()
        self._clock = clock
        self._cache: dict[str, tuple[float, Secret | None]] = {}

    async def _table(self) -> TableClient:
        return await self._tables.get(self._config.table)

    async def get(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record straight from the table (no cache): for management and renewal."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await (await self._table()).get_entity(_PARTITION, safe_key(subscription_id))
        except ResourceNotFoundError:
            return None
        return SubscriptionRecord.from_entity(dict(entity))

    async def upsert(self, record: SubscriptionRecord) -> None:
        from azure.data.tables import UpdateMode

        await (await self._table()).upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)
        self._remember(record.id, record.client_state)

    async def delete(self, subscription_id: str) -> None:
        await (await self._table()).delete_entity(_PARTITION, safe_key(subscription_id))
        self._remember(subscription_id, None)

    async def list_all(self) -> list[SubscriptionRecord]:
        table = await self._table()
        entities = [e async for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": _PARTITION})]
        return [SubscriptionRecord.from_entity(dict(e)) for e in entities]

    async def client_state(self, subscription_id: str) -> Secret | None:
        """The subscription's secret, or None if we do not own it; served from the cache when fresh."""
        cached = self._cache.get(subscription_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        record = await self.get(subscription_id)
        secret = record.client_state if record is not None else None
        self._remember(subscription_id, secret)
        return secret

    async def client_states(self, subscription_ids: set[str]) -> dict[str, Secret | None]:
        """Secrets for all ids of one POST; cache misses are read concurrently (bounded: random ids in a
        hostile POST must not open a thousand table reads at once)."""
        ids = sorted(subscription_ids)
        now = self._clock()
        unknown = [i for i in ids if not (i in self._cache and self._cache[i][0] > now)]
        refused = set(unknown[self._config.max_lookups_per_post :])  # treated as not ours, without a read
        asked = [i for i in ids if i not in refused]
        async with storage_call("subscription lookups", self._config.lookup_timeout_seconds):
            secrets = await gather_bounded(asked, self._config.lookup_concurrency, self.client_state)
        found = dict(zip(asked, secrets, strict=True))
        return {i: found.get(i) for i in ids}

    def _remember(self, subscription_id: str, secret: Secret | None) -> None:
        now = self._clock()
        if len(self._cache) >= self._config.max_cached:
            # Make room from misses and expired entries only: random ids posted by anyone must never evict
            # the secrets of our real subscriptions (that would send every genuine POST back to the table).
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now and v[1] is not None}
        ttl = self._config.cache_seconds if secret is not None else self._config.miss_cache_seconds
        if ttl <= 0:
            self._cache.pop(subscription_id, None)
            return
        self._cache[subscription_id] = (now + ttl, secret)
