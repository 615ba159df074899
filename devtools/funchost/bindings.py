"""Trigger inputs and the HTTP result, converted by ``azure.functions``' own binding converters.

The Python worker never builds ``HttpRequest``/``QueueMessage``/``TimerRequest``/``EventHubEvent`` itself: it turns the
host's gRPC ``TypedData`` into ``meta.Datum`` values (``datumdef.Datum.from_typed_data``) and calls the
registered converter's ``decode(datum, trigger_metadata=...)``; a function's HTTP return value goes back
through ``HttpResponseConverter.encode``. The harness builds the same Datums the host's data turns into,
so the app gets exactly the classes and attributes it gets in Azure (``azure.functions.http.HttpRequest``,
``azure.functions.queue.QueueMessage`` with its trigger metadata, ``azure.functions.timer.TimerRequest``, a
list of ``azure.functions.EventHubEvent`` for a cardinality-many Event Hubs trigger).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any, Protocol

import azure.functions as func
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter


def _strings(values: Mapping[str, str]) -> dict[str, meta.Datum]:
    return {name: meta.Datum(value, "string") for name, value in values.items()}


def http_request_datum(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    params: Mapping[str, str],
    body: bytes,
) -> meta.Datum:
    """The ``http`` Datum the worker makes from the host's ``RpcHttp`` (the body is raw bytes: the worker
    declares the ``RawHttpBodyBytes`` capability)."""
    return meta.Datum(
        {
            "method": meta.Datum(method, "string"),
            "url": meta.Datum(url, "string"),
            "headers": _strings(headers),
            "body": meta.Datum(body, "bytes"),
            "params": _strings(params),
            "query": _strings(query),
        },
        "http",
    )


def decode_http_request(datum: meta.Datum) -> func.HttpRequest:
    """The ``req`` argument, exactly as the worker decodes it."""
    request: func.HttpRequest = HttpRequestConverter.decode(datum, trigger_metadata={})
    return request


def _json_datetime(moment: datetime | None) -> meta.Datum | None:
    """The host sends DateTimeOffset metadata JSON-serialised (a quoted ISO string)."""
    return None if moment is None else meta.Datum(json.dumps(moment.isoformat()), "json")


def queue_trigger_metadata(
    *,
    message_id: str | None,
    dequeue_count: int | None,
    insertion_time: datetime | None,
    expiration_time: datetime | None,
    next_visible_time: datetime | None,
    pop_receipt: str | None,
) -> dict[str, meta.Datum]:
    """The queue trigger's metadata under the names the host uses (``Id``, ``DequeueCount``, ...)."""
    fields: dict[str, meta.Datum | None] = {
        "Id": None if message_id is None else meta.Datum(message_id, "string"),
        "DequeueCount": None if dequeue_count is None else meta.Datum(dequeue_count, "int"),
        "InsertionTime": _json_datetime(insertion_time),
        "ExpirationTime": _json_datetime(expiration_time),
        "NextVisibleTime": _json_datetime(next_visible_time),
        "PopReceipt": None if pop_receipt is None else meta.Datum(pop_receipt, "string"),
    }
    return {name: value for name, value in fields.items() if value is not None}


def queue_body_datum(body: bytes) -> meta.Datum:
    """The message body: text as ``string`` (what the host sends for a text message), else ``bytes``."""
    try:
        return meta.Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        return meta.Datum(body, "bytes")


def decode_queue_message(body: meta.Datum, trigger_metadata: Mapping[str, meta.Datum]) -> func.QueueMessage:
    """The ``msg`` argument, exactly as the worker decodes it."""
    message: func.QueueMessage = QueueMessageInConverter.decode(body, trigger_metadata=trigger_metadata)
    return message


def timer_datum(*, past_due: bool, schedule_status: Mapping[str, str], schedule: Mapping[str, Any]) -> meta.Datum:
    """The ``json`` Datum of the host's TimerInfo (``Schedule``, ``ScheduleStatus``, ``IsPastDue``)."""
    payload = {"Schedule": dict(schedule), "ScheduleStatus": dict(schedule_status), "IsPastDue": past_due}
    return meta.Datum(json.dumps(payload), "json")


def decode_timer_request(datum: meta.Datum) -> func.TimerRequest:
    """The timer argument, exactly as the worker decodes it."""
    request: func.TimerRequest = TimerRequestConverter.decode(datum, trigger_metadata={})
    return request


class HubEventData(Protocol):
    """What the host knows of one event: body and system properties."""

    @property
    def body(self) -> bytes: ...
    @property
    def partition_key(self) -> str | None: ...
    @property
    def sequence_number(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def enqueued_time(self) -> datetime: ...


def eventhub_batch(
    events: Sequence[HubEventData], partition_context: Mapping[str, str]
) -> tuple[meta.Datum, dict[str, meta.Datum]]:
    """The ``collection_bytes`` Datum and trigger metadata the host sends for a cardinality-many batch: per
    event its system properties (``SystemPropertiesArray``, offsets as the strings AMQP carries), the
    per-field arrays and the ``PartitionContext``."""
    system = [
        {
            "x-opt-sequence-number": e.sequence_number,
            "x-opt-offset": str(e.offset),
            "x-opt-enqueued-time": e.enqueued_time.isoformat(),
            "x-opt-partition-key": e.partition_key,
            "SequenceNumber": e.sequence_number,
            "Offset": str(e.offset),
            "PartitionKey": e.partition_key,
            "EnqueuedTimeUtc": e.enqueued_time.isoformat(),
        }
        for e in events
    ]
    arrays = {
        "SystemPropertiesArray": system,
        "PartitionKeyArray": [e.partition_key for e in events],
        "OffsetArray": [str(e.offset) for e in events],
        "SequenceNumberArray": [e.sequence_number for e in events],
        "EnqueuedTimeUtcArray": [e.enqueued_time.isoformat() for e in events],
        "PropertiesArray": [{} for _ in events],
        "PartitionContext": dict(partition_context),
    }
    metadata = {name: meta.Datum(json.dumps(value), "json") for name, value in arrays.items()}
    # The worker's protobuf CollectionBytes: the converter reads its ``bytes`` field.
    return meta.Datum(SimpleNamespace(bytes=[e.body for e in events]), "collection_bytes"), metadata


def decode_eventhub_events(datum: meta.Datum, trigger_metadata: Mapping[str, meta.Datum]) -> list[func.EventHubEvent]:
    """The ``events`` argument of a cardinality-many trigger, exactly as the worker decodes it."""
    decoded = EventHubTriggerConverter.decode(datum, trigger_metadata=trigger_metadata)
    return list(decoded) if isinstance(decoded, list) else [decoded]


class HttpResult:
    """What the host sends back for a function's return value: status, headers (in order), body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _cookie_headers(cookies: list[SimpleCookie] | None) -> list[tuple[str, str]]:
    """``Set-Cookie`` headers the converter moved into ``cookies`` (the host turns them back into headers)."""
    headers = []
    for cookie in cookies or []:
        for morsel in cookie.values():
            headers.append(("Set-Cookie", morsel.OutputString()))
    return headers


def encode_http_result(result: object) -> HttpResult:
    """Encode the return value as the worker does (``HttpResponseConverter``), then as the host answers.

    ``HttpResponse`` and ``str`` go through the converter; ``bytes`` (which the converter refuses, so the
    worker sends them as generic data) and ``None`` are answered as the host answers them. Anything else
    is a TypeError (the host fails the invocation).
    """
    if result is None:
        return HttpResult(204, [], b"")
    if isinstance(result, bytes | bytearray):
        return HttpResult(200, [("Content-Type", "application/octet-stream")], bytes(result))
    if not isinstance(result, func.HttpResponse | str):
        raise TypeError(f"an HTTP function returned {type(result).__name__}; expected func.HttpResponse, str or bytes")
    datum = HttpResponseConverter.encode(result, expected_type=None)
    if datum.type == "string":
        return HttpResult(200, [("Content-Type", "text/plain; charset=utf-8")], str(datum.value).encode("utf-8"))
    value = datum.value
    headers = [(name, str(header.value)) for name, header in value["headers"].items()]
    headers.extend(_cookie_headers(value.get("cookies")))
    body = value["body"].value
    return HttpResult(int(value["status_code"].value), headers, body if isinstance(body, bytes) else b"")
