"""The lean transaction codec against Azurite: answers read, etags kept, failures as the SDK raises them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.storage import Tables


@pytest.fixture(name="tables")
async def _tables(storage_connection_string: str, unique_name: str) -> AsyncIterator[Tables]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    yield Tables(service, unique_name)
    await service.close()


async def test_a_transaction_returns_each_rows_etag(tables: Tables) -> None:
    table = await tables.get("batch")
    rows = [{"PartitionKey": "p", "RowKey": f"r{n}", "Text": "é\r\n" * n} for n in range(3)]

    answer = await table.submit_transaction([("create", row) for row in rows])

    stored = [await table.get_entity("p", f"r{n}") for n in range(3)]
    assert [a["etag"] for a in answer] == [s.metadata["etag"] for s in stored]
    assert [s["Text"] for s in stored] == [row["Text"] for row in rows]


async def test_a_conflict_fails_the_whole_transaction_and_names_its_row(tables: Tables) -> None:
    table = await tables.get("batch")
    await table.create_entity({"PartitionKey": "p", "RowKey": "taken"})
    rows = [{"PartitionKey": "p", "RowKey": key} for key in ("free1", "taken", "free2")]

    with pytest.raises(TableTransactionError) as raised:
        await table.submit_transaction([("create", row) for row in rows])

    assert raised.value.status_code == 409
    assert raised.value.index == 1
    assert [e["RowKey"] async for e in table.list_entities()] == ["taken"]


async def test_upserts_and_conditional_deletes_in_one_transaction(tables: Tables) -> None:
    table = await tables.get("batch")
    created = await table.create_entity({"PartitionKey": "p", "RowKey": "old", "N": 1})
    operations = [
        ("upsert", {"PartitionKey": "p", "RowKey": "new", "N": 2}, {"mode": UpdateMode.REPLACE}),
        ("delete", {"PartitionKey": "p", "RowKey": "old"}, {"etag": created["etag"], "match_condition": _if_match()}),
    ]

    await table.submit_transaction(operations)

    assert [(e["RowKey"], e["N"]) async for e in table.list_entities()] == [("new", 2)]


def _if_match() -> object:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


async def test_lean_parts_store_what_was_sent_also_under_awkward_keys(tables: Tables) -> None:
    """Creates and upserts go as lean parts: quotes, spaces, plus and non-ASCII in keys reach Azurite intact,
    a replace drops the old properties, a merge keeps them."""
    table = await tables.get("batch")
    keys = ["it's", "a b", "+=&", "é~x"]
    await table.submit_transaction([("create", {"PartitionKey": "p q", "RowKey": k, "Old": 1}) for k in keys])
    await table.submit_transaction(
        [
            ("upsert", {"PartitionKey": "p q", "RowKey": keys[0], "New": 2}, {"mode": UpdateMode.REPLACE}),
            ("upsert", {"PartitionKey": "p q", "RowKey": keys[1], "New": 2}, {"mode": UpdateMode.MERGE}),
            ("upsert", {"PartitionKey": "p q", "RowKey": "fresh", "New": 3}, {"mode": UpdateMode.REPLACE}),
        ]
    )
    stored = {
        e["RowKey"]: {k: v for k, v in e.items() if k not in ("PartitionKey", "RowKey")}
        async for e in table.list_entities()
    }
    assert stored == {
        keys[0]: {"New": 2},
        keys[1]: {"Old": 1, "New": 2},
        keys[2]: {"Old": 1},
        keys[3]: {"Old": 1},
        "fresh": {"New": 3},
    }


async def test_a_transaction_over_two_partitions_is_refused_as_the_sdk_refuses_it(tables: Tables) -> None:
    table = await tables.get("batch")
    with pytest.raises(ValueError, match="Partition Keys"):
        await table.submit_transaction([("create", {"PartitionKey": p, "RowKey": "r"}) for p in ("a", "b")])
