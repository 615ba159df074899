"""An in-process stand-in for an Event Hubs namespace, and the Event Hubs trigger the host runs over it.

It replaces what the Functions host's Event Hubs *extension* and the Azure service do, never the app's code:
the app's ``eventHubTrigger`` function gets the same ``func.EventHubEvent`` batches the Python worker builds
(``bindings.decode_eventhub_events``: the real converter over the host's Datums and trigger metadata).

- **The namespace**: hubs by name, each with ``partition_count`` partitions of events (body, partition key,
  sequence number, offset, enqueue time). A sender (the Graph simulator) writes over loopback HTTP in the
  Event Hubs REST shape: ``POST /_eventhubs/<namespace>/<hub>/messages``, a JSON batch
  (``application/vnd.microsoft.servicebus.json``: ``[{"Body": ..., "BrokerProperties": {"PartitionKey": ...}}]``)
  or one raw event with a ``BrokerProperties`` header; 201. ``GET .../<hub>`` shows partitions and checkpoints,
  ``GET .../<hub>/events`` every stored event (tests). A partition key picks the partition by hash, so
  one key's events stay in order; no key: round robin. Another namespace is a 404.
- **The trigger** (one reader per partition, consumer group from the binding): up to ``maxEventBatchSize``
  events from the partition's checkpoint per invocation; the checkpoint moves past the batch after a
  successful invocation. After a failed one, with the function's retry policy (``@app.retry``), the batch is
  delivered again *from the checkpoint* (events that arrived meanwhile may join it) with
  ``context.retry_context`` counting, after the policy's delay; once the policy is used up, or without a
  policy, the checkpoint moves on anyway, as the host does.

Not modelled: the service's durability (events and checkpoints live as long as the harness process), partition
ownership across instances, and the extension's blob checkpoint store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devtools.funchost.bindings import decode_eventhub_events, eventhub_batch
from devtools.funchost.config import parse_timespan
from devtools.funchost.indexing import FunctionInfo
from devtools.funchost.invoke import Invoker

logger = logging.getLogger("funchost")

BATCH_CONTENT_TYPE = "application/vnd.microsoft.servicebus.json"
DEFAULT_PARTITIONS = 4
MAX_EVENT_BYTES = 1024 * 1024  # the service's largest event (Standard tier)
REASON = "EventHubTrigger"


@dataclass(frozen=True)
class StoredEvent:
    """One event in a partition, with the system properties the service assigns."""

    body: bytes
    partition_key: str | None
    sequence_number: int
    offset: int
    enqueued_time: datetime


@dataclass
class Partition:
    """An append-only log; readers wait on ``changed``."""

    partition_id: str
    events: list[StoredEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _next_offset: int = 0

    def append(self, body: bytes, partition_key: str | None) -> StoredEvent:
        event = StoredEvent(body, partition_key, len(self.events), self._next_offset, datetime.now(UTC))
        self._next_offset += len(body)
        self.events.append(event)
        self.changed.set()
        return event

    def read(self, from_sequence: int, max_count: int) -> list[StoredEvent]:
        return self.events[from_sequence : from_sequence + max_count]


class Hub:
    """One event hub: partitions and, per consumer group and partition, the checkpoint (next sequence number)."""

    def __init__(self, name: str, partition_count: int = DEFAULT_PARTITIONS) -> None:
        self.name = name
        self.partitions = [Partition(str(i)) for i in range(partition_count)]
        self.checkpoints: dict[tuple[str, str], int] = {}
        self._round_robin = 0

    def send(self, body: bytes, partition_key: str | None = None) -> StoredEvent:
        if partition_key is None:
            index, self._round_robin = self._round_robin, (self._round_robin + 1) % len(self.partitions)
        else:
            index = zlib.crc32(partition_key.encode("utf-8")) % len(self.partitions)
        return self.partitions[index].append(body, partition_key)

    def describe(self) -> dict[str, Any]:
        """Per partition: events held and each consumer group's checkpoint (tests read this)."""
        return {
            "name": self.name,
            "partitions": [
                {
                    "id": p.partition_id,
                    "events": len(p.events),
                    "checkpoints": {g: seq for (g, pid), seq in self.checkpoints.items() if pid == p.partition_id},
                }
                for p in self.partitions
            ],
        }


class EventHubStandIn:
    """The stand-in namespaces (``<ns>.servicebus.windows.net``) the app's connections name, their hubs and
    the loopback send route."""

    def __init__(self, partition_count: int = DEFAULT_PARTITIONS) -> None:
        self._partition_count = partition_count
        self.namespaces: set[str] = set()
        self.hubs: dict[tuple[str, str], Hub] = {}

    def hub(self, namespace: str, name: str) -> Hub:
        """The hub ``name`` of ``namespace`` (both created on first use, as if provisioned)."""
        key = (namespace.lower(), name.lower())  # both names are case-insensitive
        self.namespaces.add(key[0])
        if key not in self.hubs:
            self.hubs[key] = Hub(name, self._partition_count)
        return self.hubs[key]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_eventhubs/{namespace}/{hub}/messages", self._send),
            web.get("/_eventhubs/{namespace}/{hub}", self._describe),
            web.get("/_eventhubs/{namespace}/{hub}/events", self._peek),
        ]

    def _resolve(self, request: web.Request) -> Hub:
        namespace = request.match_info["namespace"]
        if namespace.lower() not in self.namespaces:
            raise web.HTTPNotFound(text=f"no Event Hubs namespace {namespace!r} here")
        return self.hub(namespace, request.match_info["hub"])

    async def _send(self, request: web.Request) -> web.Response:
        hub = self._resolve(request)
        raw = await request.read()
        try:
            events = _parse_send(raw, request.content_type, request.headers.get("BrokerProperties"))
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        for body, key in events:
            hub.send(body, key)
        return web.Response(status=201)

    async def _describe(self, request: web.Request) -> web.Response:
        return web.json_response(self._resolve(request).describe())

    async def _peek(self, request: web.Request) -> web.Response:
        """Every stored event (as text), without moving any checkpoint: what a test sends again."""
        hub = self._resolve(request)
        events = [
            {"partition": p.partition_id, "sequenceNumber": e.sequence_number, "partitionKey": e.partition_key,
             "body": e.body.decode("utf-8", "replace")}
            for p in hub.partitions
            for e in p.events
        ]  # fmt: skip
        return web.json_response(events)


def _parse_send(raw: bytes, content_type: str, broker_header: str | None) -> list[tuple[bytes, str | None]]:
    """(body, partition key) per event of a REST send: a JSON batch, or one raw event."""
    if content_type != BATCH_CONTENT_TYPE:
        key = _partition_key(json.loads(broker_header)) if broker_header else None
        return [(_bounded(raw), key)]
    batch = json.loads(raw)
    if not isinstance(batch, list):
        raise ValueError("a batch send is a JSON array of events")
    events = []
    for item in batch:
        if not isinstance(item, Mapping) or not isinstance(item.get("Body"), str):
            raise ValueError("each event needs a string 'Body'")
        events.append((_bounded(item["Body"].encode("utf-8")), _partition_key(item.get("BrokerProperties") or {})))
    return events


def _partition_key(properties: Any) -> str | None:
    key = properties.get("PartitionKey") if isinstance(properties, Mapping) else None
    return str(key) if key is not None else None


def _bounded(body: bytes) -> bytes:
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"an event is at most {MAX_EVENT_BYTES} bytes")
    return body


@dataclass(frozen=True)
class RetryPolicy:
    """A function's ``@app.retry`` setting: attempts after the first (-1: unbounded) and the delay rule."""

    max_retry_count: int
    strategy: str = "fixed_delay"
    delay: float = 1.0  # fixed_delay, or exponential_backoff's minimum
    maximum: float = 30.0

    @classmethod
    def of(cls, setting: Mapping[str, Any] | None) -> RetryPolicy | None:
        if not setting:
            return None
        strategy = str(setting.get("strategy", "fixed_delay"))
        if strategy == "exponential_backoff":
            low = parse_timespan(str(setting.get("minimum_interval", "00:00:01")))
            high = parse_timespan(str(setting.get("maximum_interval", "00:00:30")))
        else:
            low = high = parse_timespan(str(setting.get("delay_interval", "00:00:01")))
        return cls(int(setting.get("max_retry_count", 0)), strategy, low, high)

    def wait(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based)."""
        if self.strategy != "exponential_backoff":
            return self.delay
        return float(min(self.delay * 2 ** (retry - 1), self.maximum))

    def allows(self, retry: int) -> bool:
        return self.max_retry_count < 0 or retry <= self.max_retry_count


class EventHubListener:
    """The trigger of one function over one hub: a reader per partition (see the module docstring)."""

    def __init__(
        self,
        function: FunctionInfo,
        hub: Hub,
        invoker: Invoker,
        *,
        namespace: str,
        max_batch: int,
        retry: RetryPolicy | None,
    ) -> None:
        self.function = function
        self.hub = hub
        self._invoker = invoker
        self._group = function.consumer_group
        self._namespace = namespace
        self._max_batch = max_batch
        self._retry = retry
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for partition in self.hub.partitions:
            self.hub.checkpoints.setdefault((self._group, partition.partition_id), 0)
            self._tasks.append(asyncio.create_task(self._read(partition), name=f"eventhub-{partition.partition_id}"))

    def request_stop(self) -> None:
        self._stopping.set()
        for partition in self.hub.partitions:
            partition.changed.set()  # wake idle readers

    async def stop(self, timeout: float) -> None:
        self.request_stop()
        _, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self, partition: Partition) -> None:
        key = (self._group, partition.partition_id)
        while not self._stopping.is_set():
            partition.changed.clear()
            batch = partition.read(self.hub.checkpoints[key], self._max_batch)
            if not batch:
                await partition.changed.wait()
                continue
            await self._deliver(partition, batch)

    async def _deliver(self, partition: Partition, batch: list[StoredEvent]) -> None:
        """Invoke until the batch succeeds or the retry policy is used up; then checkpoint past what ran."""
        key = (self._group, partition.partition_id)
        retry = 0
        while True:
            try:
                await self._invoker.invoke(
                    self.function, self._events(partition, batch), reason=REASON, retry=(retry, self._max_retries)
                )
                break
            except Exception:  # logged by the invoker
                retry += 1
                if self._retry is None or not self._retry.allows(retry) or self._stopping.is_set():
                    logger.warning("'%s': partition %s moves past a failed batch", self.function.name, key[1])
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry.wait(retry))
            if self._stopping.is_set():
                return  # not checkpointed: a restart delivers the batch again
            batch = partition.read(self.hub.checkpoints[key], self._max_batch)  # again from the checkpoint
        self.hub.checkpoints[key] = batch[-1].sequence_number + 1

    @property
    def _max_retries(self) -> int:
        return self._retry.max_retry_count if self._retry is not None else 0

    def _events(self, partition: Partition, batch: list[StoredEvent]) -> Any:
        context = {
            "ConsumerGroup": self._group,
            "EventHubName": self.hub.name,
            "FullyQualifiedNamespace": self._namespace,
            "PartitionId": partition.partition_id,
        }
        datum, metadata = eventhub_batch(batch, context)
        return decode_eventhub_events(datum, metadata)
