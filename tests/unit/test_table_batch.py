"""The lean transaction codec writes the SDK's bytes and reads Azure's answers (shared/table_batch.py)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.table_batch import decode_parts, encode_changeset, lean_parts

CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)
# Every operation kind the app submits in transactions (dedupe, cache, mirror), with awkward values.
OPERATIONS: list[Any] = [
    ("create", {"PartitionKey": "p", "RowKey": "a", "N": 1, "When": datetime(2026, 1, 1, tzinfo=UTC), "S": "x\u00e9"}),
    ("upsert", {"PartitionKey": "p", "RowKey": "b", "X": True}, {"mode": UpdateMode.REPLACE}),
    ("upsert", {"PartitionKey": "p", "RowKey": "c", "X": "a\r\nb"}, {"mode": UpdateMode.MERGE}),
    (
        "update",
        {"PartitionKey": "p", "RowKey": "d", "X": 1.5},
        {"mode": UpdateMode.REPLACE, "etag": "W/\"datetime'2026'\"", "match_condition": MatchConditions.IfNotModified},
    ),
    (
        "delete",
        {"PartitionKey": "p", "RowKey": "e"},
        {"etag": 'W/"x"', "match_condition": MatchConditions.IfNotModified},
    ),
    ("delete", {"PartitionKey": "p", "RowKey": "f"}),
]


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


class _Capture(AsyncHttpTransport):
    """A transport that keeps the request the pipeline would send and stops there."""

    async def __aenter__(self) -> _Capture:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, request: Any, **_: Any) -> Any:
        raise _Captured(request)


# The operations the app's hot paths submit, built by ``lean_parts`` instead of the SDK: awkward keys too.
LEAN_OPERATIONS: list[Any] = [
    ("create", {"PartitionKey": "p q", "RowKey": "h-ab~forward", "When": datetime(2026, 1, 1, tzinfo=UTC), "N": -2}),
    ("create", {"PartitionKey": "p q", "RowKey": "x\u00e9", "Owner": "", "F": 0.5, "B": False}),
    ("upsert", {"PartitionKey": "p q", "RowKey": "it's +=&é~", "X": "a\r\nb"}, {"mode": UpdateMode.REPLACE}),
    ("upsert", {"PartitionKey": "p q", "RowKey": "m", "Generation": 7}, {"mode": UpdateMode.MERGE}),
    ("upsert", {"PartitionKey": "p q", "RowKey": "n"}),
]


async def _sdk_batch(operations: list[Any] = OPERATIONS) -> tuple[bytes, list[HttpRequest]]:
    """The body the SDK itself sends for ``operations``, and the part requests it built."""
    client = TableClient.from_connection_string(CONNECTION, "tbl", transport=_Capture())
    parts: list[HttpRequest] = []
    original = client._batch_send

    async def recording(table_name: str, *requests: HttpRequest, **kwargs: Any) -> Any:
        parts.extend(requests)
        return await original(table_name, *requests, **kwargs)

    client._batch_send = recording  # type: ignore[method-assign]
    with pytest.raises(_Captured) as captured:
        await client.submit_transaction(operations)
    body = captured.value.request.body
    return body if isinstance(body, bytes) else body.encode(), parts


def _boundaries(sdk_body: bytes) -> tuple[str, str, str]:
    """The batch and changeset boundaries and the date the SDK wrote into ``sdk_body``."""
    text = sdk_body.decode()
    batch = re.search(r"--(batch_[0-9a-f-]{36})", text)
    changeset = re.search(r"boundary=(changeset_[0-9a-f-]{36})", text)
    date = re.search(r"x-ms-date: ([^\r]+)", text)
    assert batch
    assert changeset
    assert date
    return batch.group(1), changeset.group(1), date.group(1)


def test_the_request_body_is_the_sdks_byte_for_byte() -> None:
    sdk_body, parts = asyncio.run(_sdk_batch())
    assert encode_changeset(parts, *_boundaries(sdk_body)) == sdk_body


def test_lean_parts_of_creates_and_upserts_are_the_sdks_byte_for_byte() -> None:
    sdk_body, _ = asyncio.run(_sdk_batch(LEAN_OPERATIONS))
    parts = lean_parts("http://127.0.0.1:9/devstoreaccount1", "tbl", "2019-02-02", LEAN_OPERATIONS)
    assert parts is not None
    assert encode_changeset(parts, *_boundaries(sdk_body)) == sdk_body


@pytest.mark.parametrize(
    "operation",
    [
        ("delete", {"PartitionKey": "p", "RowKey": "e"}),
        ("update", {"PartitionKey": "p", "RowKey": "d"}, {"mode": UpdateMode.REPLACE}),
        ("upsert", {"PartitionKey": "p", "RowKey": "c"}, {"mode": UpdateMode.REPLACE, "etag": "x"}),
        ("create", {"PartitionKey": "p", "RowKey": "a"}, {"headers": {"x": "y"}}),
    ],
)
def test_any_other_operation_or_option_is_left_to_the_sdk(operation: Any) -> None:
    assert lean_parts("http://h/a", "tbl", "2019-02-02", [LEAN_OPERATIONS[0], operation]) is None


ANSWER = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    b"--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nETag: W/\"datetime'2026-12-01T11%3A00%3A00.1Z'\"\r\n"
    b"Content-Type: application/json\r\n\r\n"
    b'{"PartitionKey":"p","RowKey":"a","Text":"a line\\r\\nHTTP/1.1 500 in a value"}\r\n'
    b"--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b'HTTP/1.1 204 No Content\r\nETag: W/"b"\r\n\r\n\r\n'
    b"--changesetresponse_2--\r\n--batchresponse_1--\r\n"
)


def test_an_answer_is_read_part_by_part_with_each_etag() -> None:
    parts = decode_parts(ANSWER, "multipart/mixed; boundary=batchresponse_1")

    assert parts is not None
    assert [status for status, _ in parts] == [201, 204]
    assert parts[0][1]["etag"] == "W/\"datetime'2026-12-01T11%3A00%3A00.1Z'\""
    assert parts[1][1]["etag"] == 'W/"b"'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"odata.error": {}}', "application/json"),
        (ANSWER, "multipart/mixed"),
        (b"--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--", "multipart/mixed; boundary=x"),
        (b"--x\r\n\r\n--y\r\n\r\nnot http\r\n--y--\r\n--x--", "multipart/mixed; boundary=x"),
        (b"", "multipart/mixed; boundary=x"),
    ],
)
def test_an_answer_of_another_shape_is_left_to_the_sdk(body: bytes, content_type: str) -> None:
    assert decode_parts(body, content_type) is None
