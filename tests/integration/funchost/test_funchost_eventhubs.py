"""FuncHost's Event Hubs stand-in and trigger, in the pytest loop: events sent over loopback HTTP in the Event
Hubs REST shape reach a cardinality-many function as ``func.EventHubEvent`` batches built by the real
converter (partition key, sequence numbers, offsets), the checkpoint moves after a success, a failed batch
comes again from the checkpoint under the function's retry policy, and the policy running out moves on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx

from devtools.funchost import FuncHost

NAMESPACE = "standin.servicebus.windows.net"
ENV = {"FUNCHOST_FUNCTION_KEY": "f", "FUNCHOST_MASTER_KEY": "m", "HUB__fullyQualifiedNamespace": NAMESPACE}
BATCH = "application/vnd.microsoft.servicebus.json"


class Recorder:
    """What the function saw, per invocation; ``fail`` makes the next invocations raise."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = 0

    def app(self, retry: bool = True) -> func.FunctionApp:
        app = func.FunctionApp()

        async def read(events: list[func.EventHubEvent], context: func.Context) -> None:
            self.calls.append(
                {
                    "bodies": [e.get_body().decode() for e in events],
                    "keys": [e.partition_key for e in events],
                    "sequence": [e.sequence_number for e in events],
                    "offsets": [e.offset for e in events],
                    "enqueued": [e.enqueued_time for e in events],
                    "retry": (context.retry_context.retry_count, context.retry_context.max_retry_count),
                    "partition": events[0].metadata["PartitionContext"]["PartitionId"],
                }
            )
            if self.fail:
                self.fail -= 1
                raise RuntimeError("boom")

        function = app.event_hub_message_trigger(
            arg_name="events", event_hub_name="%HUB_NAME%", connection="HUB", cardinality="many"
        )(read)
        if retry:
            function = app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:00.100")(function)
        app.function_name("read")(function)
        return app


async def wait_until_async(condition: Any, timeout: float) -> None:
    """Poll ``condition()`` on the loop (the harness runs on it too) until true; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _send(client: httpx.AsyncClient, events: list[dict[str, Any]], hub: str = "graph") -> httpx.Response:
    return await client.post(f"/_eventhubs/{NAMESPACE}/{hub}/messages", json=events, headers={"content-type": BATCH})


async def _hub(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get(f"/_eventhubs/{NAMESPACE}/graph")).json()
    return document


async def test_events_arrive_as_eventhubevent_batches_and_are_checkpointed(tmp_path: Path) -> None:
    recorder = Recorder()
    host = FuncHost(recorder.app(), app_dir=tmp_path, env={**ENV, "HUB_NAME": "graph"})
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url) as client:
            events = [{"Body": f"e{i}", "BrokerProperties": {"PartitionKey": "sub-1"}} for i in range(3)]
            assert (await _send(client, events)).status_code == 201
            await wait_until_async(lambda: sum(len(c["bodies"]) for c in recorder.calls) == 3, 5)
            await asyncio.sleep(0.1)
            bodies = [b for c in recorder.calls for b in c["bodies"]]
            assert bodies == ["e0", "e1", "e2"]  # one key: one partition, in order
            first = recorder.calls[0]
            assert set(first["keys"]) == {"sub-1"}
            sequence = [s for c in recorder.calls for s in c["sequence"]]
            assert sequence == [0, 1, 2]
            offsets = [o for c in recorder.calls for o in c["offsets"]]
            assert offsets == [0, 2, 4]  # byte offsets of 2-byte bodies
            assert all(t is not None and t.tzinfo is not None for c in recorder.calls for t in c["enqueued"])
            assert first["retry"] == (0, 2)
            partition = first["partition"]
            hub = await _hub(client)
            (described,) = [p for p in hub["partitions"] if p["id"] == partition]
            assert described["events"] == 3
            assert described["checkpoints"] == {"$Default": 3}
            other = await client.post("/_eventhubs/other.servicebus.windows.net/graph/messages", json=[])
            assert other.status_code == 404
    finally:
        await host.stop()


async def test_a_failed_batch_comes_again_from_the_checkpoint(tmp_path: Path) -> None:
    """Two failures, then success: three invocations of the same events (retry_count 0, 1, 2); the
    checkpoint stays until the success, then moves past the batch."""
    recorder = Recorder()
    recorder.fail = 2
    host = FuncHost(recorder.app(), app_dir=tmp_path, env={**ENV, "HUB_NAME": "graph"})
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url) as client:
            events = [{"Body": "a", "BrokerProperties": {"PartitionKey": "k"}}]
            await _send(client, events)
            await wait_until_async(lambda: len(recorder.calls) == 3, 5)
            assert [c["bodies"] for c in recorder.calls] == [["a"], ["a"], ["a"]]
            assert [c["retry"] for c in recorder.calls] == [(0, 2), (1, 2), (2, 2)]
            await asyncio.sleep(0.05)
            hub = await _hub(client)
            assert {"$Default": 1} in [p["checkpoints"] for p in hub["partitions"] if p["events"]]
    finally:
        await host.stop()


async def test_without_retries_left_the_checkpoint_moves_on(tmp_path: Path) -> None:
    """As the host: once the policy is used up (or without one) the failed batch is not delivered again."""
    recorder = Recorder()
    recorder.fail = 10
    host = FuncHost(recorder.app(retry=False), app_dir=tmp_path, env={**ENV, "HUB_NAME": "graph"})
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url) as client:
            await _send(client, [{"Body": "x", "BrokerProperties": {"PartitionKey": "k"}}])
            await wait_until_async(lambda: len(recorder.calls) == 1, 5)
            await asyncio.sleep(0.3)
            assert len(recorder.calls) == 1
            hub = await _hub(client)
            assert {"$Default": 1} in [p["checkpoints"] for p in hub["partitions"] if p["events"]]
    finally:
        await host.stop()


async def test_a_missing_connection_puts_the_function_in_error(tmp_path: Path) -> None:
    host = FuncHost(Recorder().app(), app_dir=tmp_path, env={"HUB_NAME": "graph"})
    await host.start()
    try:
        assert "HUB__fullyQualifiedNamespace" in host.errors["read"]
    finally:
        await host.stop()
