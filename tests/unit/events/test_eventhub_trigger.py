"""The ``process_eventhub`` trigger: the worker's ``EventHubEvent`` batch becomes the ingest's records, and
only the retry policy's last attempt asks the ingest to park instead of raise (the ingest is a fake here;
the batch is built by the harness's converters, as the worker builds it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from devtools.funchost.bindings import decode_eventhub_events, eventhub_batch
from devtools.funchost.invoke import InvocationContext
from shared.events.eventhub import HubEvent
from shared.settings import Settings
from shared.wiring import EVENTHUB_INGEST, SETTINGS, registry
from triggers.eventhubs import MAX_RETRIES, process_eventhub

ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0",
    "GRAPH_AUTH_MODE": "static_token",
    "GRAPH_STATIC_TOKEN": "t",
}


@dataclass
class Stored:
    body: bytes
    partition_key: str | None
    sequence_number: int
    offset: int
    enqueued_time: datetime


class FakeIngest:
    def __init__(self) -> None:
        self.calls: list[tuple[list[HubEvent], bool]] = []

    async def process(self, events: Sequence[HubEvent], *, last_attempt: bool = False) -> None:
        self.calls.append((list(events), last_attempt))


@pytest.fixture(name="ingest")
async def _ingest() -> AsyncIterator[FakeIngest]:
    fake = FakeIngest()
    registry.override(SETTINGS, lambda: Settings.from_env(ENV))
    registry.override(EVENTHUB_INGEST, lambda: fake)  # type: ignore[arg-type, return-value]
    yield fake
    await registry.reset()


def _batch() -> list[object]:
    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    stored = [Stored(b'{"value":[]}', "sub-1", 41, 4096, when), Stored(b"{}", None, 42, 4108, when)]
    context = {"ConsumerGroup": "$Default", "EventHubName": "h", "FullyQualifiedNamespace": "n", "PartitionId": "2"}
    return list(decode_eventhub_events(*eventhub_batch(stored, context)))


@pytest.mark.parametrize(("retry", "last"), [(0, False), (MAX_RETRIES - 1, False), (MAX_RETRIES, True)])
async def test_events_reach_the_ingest_and_only_the_last_retry_parks(
    ingest: FakeIngest, retry: int, last: bool
) -> None:
    context = InvocationContext("id", "process_eventhub", ".", "00-" + "1" * 32 + "-" + "2" * 16 + "-01", (retry, 4))
    await process_eventhub(_batch(), context)

    ((events, last_attempt),) = ingest.calls
    assert last_attempt is last
    assert [(e.body, e.sequence_number, e.partition_key, e.offset) for e in events] == [
        (b'{"value":[]}', 41, "sub-1", 4096),
        (b"{}", 42, None, 4108),
    ]
    assert events[0].enqueued_time == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
