"""The queue listener's settle step (delete / release / poison move) and the message the function gets,
with a fake queue client so storage failures can be scripted."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import AzureError, ResourceNotFoundError, ServiceRequestError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueMessage

from devtools.funchost.config import QueueOptions, StorageConnection
from devtools.funchost.indexing import FunctionInfo
from devtools.funchost.invoke import Invoker
from devtools.funchost.queues import RECEIVE_VISIBILITY_TIMEOUT, QueueListener, to_function_message


class FakeQueue:
    """Records calls; the first ``failures`` calls of each operation raise ``error``."""

    def __init__(self, failures: int = 0, error: AzureError | None = None) -> None:
        self.failures = failures
        self.error = error or ServiceRequestError("connection refused")
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def _call(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if len([c for c in self.calls if c[0] == name]) <= self.failures:
            raise self.error

    async def create_queue(self, **kwargs: Any) -> None:
        return None

    def receive_messages(self, **kwargs: Any) -> Any:
        raise AssertionError("not used here")

    async def delete_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> None:
        await self._call("delete", message=message, pop_receipt=pop_receipt, **kwargs)

    async def update_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> None:
        await self._call("update", message=message, pop_receipt=pop_receipt, **kwargs)

    async def send_message(self, content: Any, **kwargs: Any) -> None:
        await self._call("send", content=content, **kwargs)

    async def close(self) -> None:
        return None


def _message(dequeue_count: int = 1) -> QueueMessage:
    message = QueueMessage(content=base64.b64encode(b'{"n": 1}').decode())
    message.id = "m-1"
    message.pop_receipt = "receipt"
    message.dequeue_count = dequeue_count
    message.inserted_on = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    message.expires_on = message.inserted_on + timedelta(days=7)
    message.next_visible_on = message.inserted_on + timedelta(minutes=10)
    return message


def _listener(queue: FakeQueue, poison: FakeQueue, *, fail: bool = False, delays: int = 4) -> QueueListener:
    async def handler(msg: func.QueueMessage) -> None:
        if fail:
            raise RuntimeError("failing on purpose")

    function = FunctionInfo(
        name="handler",
        func=handler,
        trigger_type="queueTrigger",
        trigger={"type": "queueTrigger", "name": "msg", "queueName": "q"},
    )
    return QueueListener(
        function,
        queue_name="q",
        connection=StorageConnection(connection_string=""),
        options=QueueOptions(max_dequeue_count=3),
        invoker=Invoker(app_dir=".", function_timeout=None),
        clients=(queue, poison),
        settle_delays=[0.0] * delays,
    )


async def test_a_delete_that_fails_briefly_is_retried_until_it_succeeds() -> None:
    """Two failed deletes (storage briefly unreachable), then success: the message is deleted, and each
    attempt runs without the SDK's own retries (the listener paces them)."""
    queue = FakeQueue(failures=2)
    await _listener(queue, FakeQueue())._process(_message())
    assert [name for name, _ in queue.calls] == ["delete", "delete", "delete"]
    assert all(kwargs["retry_total"] == 0 and kwargs["pop_receipt"] == "receipt" for _, kwargs in queue.calls)


async def test_a_release_after_failure_is_retried_too() -> None:
    """A failed invocation makes the message visible again (update_message); that is retried as well."""
    queue = FakeQueue(failures=1)
    await _listener(queue, FakeQueue(), fail=True)._process(_message())
    assert [name for name, _ in queue.calls] == ["update", "update"]


async def test_giving_up_says_when_the_message_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    """Storage down for every attempt: the listener gives up after all of them and logs that the message
    reappears when its receive lease ends."""
    queue = FakeQueue(failures=100)
    with caplog.at_level(logging.INFO, logger="funchost"):
        await _listener(queue, FakeQueue(), delays=2)._process(_message())
    assert len(queue.calls) == 3
    assert "after 3 attempts" in caplog.text
    assert f"{RECEIVE_VISIBILITY_TIMEOUT} s receive lease" in caplog.text


async def test_a_message_that_is_gone_is_not_retried() -> None:
    """404 (the lease passed and someone else has the message, or it was deleted): retrying cannot help."""
    gone = ResourceNotFoundError("MessageNotFound")
    gone.status_code = 404  # as the SDK sets it from the response
    queue = FakeQueue(failures=100, error=gone)
    await _listener(queue, FakeQueue())._process(_message())
    assert len(queue.calls) == 1


async def test_poison_copy_and_delete_are_retried_separately() -> None:
    """The last allowed attempt fails: the copy to the poison queue is retried on its own and the delete
    on its own, so a retried delete never sends a second poison copy."""
    queue, poison = FakeQueue(failures=1), FakeQueue(failures=1)
    await _listener(queue, poison, fail=True)._process(_message(dequeue_count=3))
    assert [name for name, _ in poison.calls] == ["send", "send"]
    assert [name for name, _ in queue.calls] == ["delete", "delete"]


def test_the_function_gets_what_the_queue_converter_makes_from_the_host_metadata() -> None:
    """The message is the one QueueMessageInConverter decodes from the body and the trigger metadata the
    host sends (Id, DequeueCount, InsertionTime, ExpirationTime, NextVisibleTime, PopReceipt)."""
    message = _message(dequeue_count=2)
    received = to_function_message(message, b'{"n": 1}')
    expected = QueueMessageInConverter.decode(
        meta.Datum('{"n": 1}', "string"),
        trigger_metadata={
            "Id": meta.Datum("m-1", "string"),
            "DequeueCount": meta.Datum(2, "int"),
            "InsertionTime": meta.Datum('"2024-05-01T12:00:00.123456+00:00"', "json"),
            "ExpirationTime": meta.Datum('"2024-05-08T12:00:00.123456+00:00"', "json"),
            "NextVisibleTime": meta.Datum('"2024-05-01T12:10:00.123456+00:00"', "json"),
            "PopReceipt": meta.Datum("receipt", "string"),
        },
    )
    assert type(received) is type(expected)
    fields = ("id", "dequeue_count", "insertion_time", "expiration_time", "time_next_visible", "pop_receipt")
    assert {f: getattr(received, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    assert received.get_body() == expected.get_body() == b'{"n": 1}'
    assert received.insertion_time == message.inserted_on
