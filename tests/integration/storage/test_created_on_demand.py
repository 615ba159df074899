"""Tables and queues are created by the first call that needs them, not ahead of it: a cold process makes
no creation round trips before its first answer, and a missing table or queue never fails a call."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from shared.storage import Queues, Tables, counting_calls


class CountingCreates:
    """Counts the service's create calls (what "on demand" must keep to one per missing container)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: object, method: str) -> None:
        self.count = 0
        original = getattr(service, method)

        async def counted(*args: object, **kwargs: object) -> object:
            self.count += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(service, method, counted)


async def test_a_table_is_created_by_its_first_write_and_reads_of_a_missing_one_find_nothing(
    storage_connection_string: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        creates = CountingCreates(monkeypatch, service, "create_table_if_not_exists")
        tables = Tables(service, unique_name)
        with counting_calls() as counted:
            table = await tables.get("things")
        assert counted.calls == 0  # handing out the client costs no round trip

        assert [row async for row in table.query_entities("PartitionKey eq 'p'")] == []
        with pytest.raises(ResourceNotFoundError):
            await table.get_entity("p", "r")
        await table.create_entity({"PartitionKey": "p", "RowKey": "r", "Value": 1})
        assert (await table.get_entity("p", "r"))["Value"] == 1
        with pytest.raises(ResourceNotFoundError):  # a missing row of an existing table creates nothing
            await table.get_entity("p", "absent")
        assert creates.count == 1  # by the point read's TableNotFound (a listing creates nothing)

        other = await tables.get("batched")
        await other.submit_transaction([("create", {"PartitionKey": "p", "RowKey": str(n)}) for n in range(3)])
        assert len([row async for row in other.list_entities()]) == 3
        assert creates.count == 2


async def test_a_table_deleted_under_a_running_process_is_created_again(
    storage_connection_string: str, unique_name: str
) -> None:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        table = await Tables(service, unique_name).get("things")
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
        await service.delete_table(f"{unique_name}things")
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r2"})
        assert [row["RowKey"] async for row in table.list_entities()] == ["r2"]


async def test_a_queue_is_created_by_its_first_send_and_a_missing_one_has_no_messages(
    storage_connection_string: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with QueueServiceClient.from_connection_string(storage_connection_string) as service:
        queues = Queues(service)
        with counting_calls() as counted:
            queue = await queues.get(unique_name)
        assert counted.calls == 0
        created = CountingCreates(monkeypatch, queue._client, "create_queue")  # type: ignore[attr-defined]
        assert [m async for m in queue.receive_messages()] == []
        await queue.send_message("hello")
        await queue.send_message("again")
        assert [m.content async for m in queue.receive_messages(max_messages=2)] == ["hello", "again"]
        assert created.count == 1
        assert (await (await queues.get(unique_name + "x")).get_queue_properties()).approximate_message_count == 0
