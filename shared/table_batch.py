"""A lean wire codec for Table Storage entity-group transactions, used by every table client of the app.

Why: under load the processor's Storage work is a few transactions per queue message (dedupe claims and
completions, cache generations), and profiling the harness while it drained a backlog put ~45% of the event
loop in the SDK's transaction codec: it builds the multipart request with the ``email`` package's generator
and parses the answer with its feed parser (header registries, policy objects), per part. The wire format is
small and fixed (``$batch``: one changeset of ``application/http`` parts), so this module writes and reads it
with plain byte operations.

The parts of the two operations the hot paths submit (``create``: dedupe claims; ``upsert``: cache
generations, completions) are built here too: the SDK's ``TableBatchOperations`` makes an ``HttpRequest``
per part through its generated request builders, ~17% of the harness's loop while it processed 1,000
notifications/s (py-spy, 2026-12-02). Their entities are still typed by the SDK's own
``_add_entity_properties``; any other operation or option sends the whole transaction the SDK's way.

What stays the SDK's: the other operations, the pipeline that sends the batch (credential, retries,
transport), and every error: an answer that is not a 202 with all parts 2xx is handed to the SDK's own
error decoding, so callers see exactly the exceptions the SDK raises (``TableTransactionError`` with its
index, ``RequestTooLargeError``, ...). ``tests/unit/test_table_batch.py`` checks that the request bytes
equal the SDK's for every operation kind the app uses, so a change of the pinned SDK that alters the
format fails there first.
"""

from __future__ import annotations

import json
import types
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from azure.core.rest import HttpRequest

_CRLF = b"\r\n"


@dataclass(frozen=True)
class Part:
    """One operation of a transaction, as the SDK's request builders would make it (method, URL, headers,
    body), without building an ``HttpRequest``."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


_UPSERT_METHODS = {"replace": "PUT", "merge": "PATCH"}


def lean_parts(endpoint: str, table: str, version: str, operations: Sequence[Any]) -> list[Part] | None:
    """The parts of ``operations`` when each is a ``create`` or an ``upsert`` with at most a ``mode``; else
    None (the SDK builds the transaction). ``endpoint``: the account URL the SDK prefixes each part with."""
    from azure.data.tables._serialize import _add_entity_properties

    parts: list[Part] = []
    for operation in operations:
        kind, entity, options = operation if len(operation) == 3 else (*operation, {})
        kind = str(kind).lower()
        mode = str(getattr(options.get("mode", "merge"), "value", options.get("mode", "merge"))).lower()
        if set(options) - {"mode"} or (kind == "upsert" and mode not in _UPSERT_METHODS):
            return None
        if "PartitionKey" not in entity or "RowKey" not in entity:
            return None  # the SDK raises its own error for that
        if kind == "create":
            method, url, accept = "POST", f"{endpoint}/{table}", "application/json;odata=minimalmetadata"
        elif kind == "upsert":
            keys = f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
            method, url, accept = _UPSERT_METHODS[mode], f"{endpoint}/{table}({keys})", "application/json"
        else:
            return None
        body = json.dumps(_add_entity_properties(entity))
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        headers |= {"x-ms-version": version, "DataServiceVersion": "3.0", "Accept": accept}
        parts.append(Part(method, url, headers, body.encode()))
    return parts


def _key(value: object) -> str:
    """A PartitionKey/RowKey in a part's URL: quotes doubled, then percent-encoded, as the SDK does."""
    if not isinstance(value, str):
        raise TypeError("PartitionKey or RowKey must be of type string.")
    return quote(value.replace("'", "''"), safe="")


def encode_changeset(requests: Sequence[HttpRequest | Part], batch: str, changeset: str, date: str) -> bytes:
    """The ``$batch`` body: one changeset holding each request as an ``application/http`` part."""
    out = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, request in enumerate(requests):
        head = [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {index}",
            "",
            f"{request.method} {request.url} HTTP/1.1",
            *(f"{name}: {value}" for name, value in request.headers.items()),
            f"x-ms-date: {date}",  # what the SDK's StorageHeadersPolicy adds to each part
            f"Date: {date}",
        ]
        out.append("\r\n".join(head).encode() + b"\r\n\r\n" + _body(request) + _CRLF)
    out.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return b"".join(out)


def _body(request: HttpRequest | Part) -> bytes:
    content = request.content
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    raise TypeError(f"a transaction part with a {type(content).__name__} body")


def decode_parts(body: bytes, content_type: str) -> list[tuple[int, dict[str, str]]] | None:
    """``(status, headers)`` of each part of a ``$batch`` answer (header names lower-cased); None when the
    answer is not the expected shape (the caller then lets the SDK read it)."""
    changeset = _part_after(body, _boundary(content_type))
    if changeset is None:
        return None
    head, _, inner = changeset.partition(b"\r\n\r\n")
    inner_boundary = _boundary(_header(head, "content-type") or "")
    if inner_boundary is None:
        return None
    parts: list[tuple[int, dict[str, str]]] = []
    for piece in inner.split(b"--" + inner_boundary)[1:]:
        if piece.startswith(b"--"):
            break
        _, _, message = piece.partition(b"\r\n\r\n")  # the part's own MIME headers, then the HTTP message
        status_and_headers = message.partition(b"\r\n\r\n")[0].split(_CRLF)
        status_line = status_and_headers[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            return None
        headers: dict[str, str] = {}
        for line in status_and_headers[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        parts.append((int(status_line[1]), headers))
    return parts


def _boundary(content_type: str | None) -> bytes | None:
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


def _part_after(body: bytes, boundary: bytes | None) -> bytes | None:
    if boundary is None:
        return None
    pieces = body.split(b"--" + boundary)
    return pieces[1].lstrip(_CRLF) if len(pieces) > 2 else None


def _header(head: bytes, wanted: str) -> str | None:
    for line in head.split(_CRLF):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower().decode("latin-1") == wanted:
            return value.strip().decode("latin-1")
    return None


async def _batch_send(
    self: Any, table_name: str, *requests: HttpRequest | Part, **kwargs: Any
) -> list[Mapping[str, Any]]:
    """``TableClient._batch_send`` with the lean codec; errors and odd answers go the SDK's way."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    request = HttpRequest(
        "POST",
        f"{self.scheme}://{self._primary_hostname}/$batch",
        headers={
            "x-ms-version": self.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={batch}",
            "Accept": "application/json",
        },
        content=encode_changeset(requests, batch, changeset, formatdate(usegmt=True)),
    )
    response = await self._client.send_request(request, stream=True, **kwargs)
    await response.read()
    if response.status_code == 202:
        parts = decode_parts(response.content, response.headers.get("Content-Type", ""))
        if parts is not None and len(parts) == len(requests) and all(200 <= s < 300 for s, _ in parts):
            return [{"etag": headers["etag"]} if "etag" in headers else {} for _, headers in parts]
    return await _sdk_outcome(response, table_name, requests, batch, changeset)


async def _sdk_outcome(
    response: Any, table_name: str, sent: Sequence[HttpRequest | Part], batch: str, changeset: str
) -> list[Mapping[str, Any]]:
    """The SDK's own reading of a ``$batch`` answer (its ``_batch_send`` after the send), for errors."""
    from azure.data.tables import _base_client, _error
    from azure.data.tables._policies import StorageHeadersPolicy

    decode: Any = _error._decode_error  # the SDK's helpers are untyped
    check_name: Any = _error._validate_tablename_error
    metadata: Any = _base_client.extract_batch_part_metadata
    too_large = "The transaction request was too large"
    if response.status_code == 413:
        raise decode(response, error_message=too_large, error_type=_error.RequestTooLargeError)
    if response.status_code != 202:
        decoded = decode(response)
        check_name(decoded, table_name)
        raise decoded
    # The SDK reads parts through the multipart description of the request it sent: attach it now (before
    # the send it would have made the pipeline encode the body the slow way).
    requests = [r if isinstance(r, HttpRequest) else HttpRequest(r.method, r.url, headers=r.headers) for r in sent]
    inner = HttpRequest("POST", "")
    inner.set_multipart_mixed(*requests, policies=[StorageHeadersPolicy()], boundary=changeset)
    response.request.set_multipart_mixed(inner, policies=[StorageHeadersPolicy()], enforce_https=False, boundary=batch)
    parts = []
    async for part in response.parts():
        await part.read()
        parts.append(part)
    errors = [part for part in parts if not 200 <= part.status_code < 300]
    if errors:
        if errors[0].status_code == 413:
            raise decode(response, error_message=too_large, error_type=_error.RequestTooLargeError)
        decoded = decode(response=errors[0], error_type=_error.TableTransactionError)
        check_name(decoded, table_name)
        raise decoded
    return [metadata(part) for part in parts]


async def _submit_transaction(self: Any, operations: Any, **kwargs: Any) -> list[Mapping[str, Any]]:
    """``TableClient.submit_transaction`` with lean parts when every operation allows them."""
    if isinstance(operations, Sequence):
        endpoint = f"{self.scheme}://{self._primary_hostname}"
        parts = lean_parts(endpoint, self.table_name, self._client._config.version, operations)
        if parts is not None and _one_partition(operations):
            return await _batch_send(self, self.table_name, *parts, **kwargs) if parts else []
    answer: list[Mapping[str, Any]] = await type(self).submit_transaction(self, operations, **kwargs)
    return answer


def _one_partition(operations: Sequence[Any]) -> bool:
    """The SDK refuses a transaction over several partitions before sending it: so does the lean path (by
    leaving it to the SDK, which raises its own error)."""
    return len({operation[1].get("PartitionKey") for operation in operations}) <= 1


def use_lean_transactions(client: Any) -> Any:
    """Give an ``azure.data.tables.aio.TableClient`` the lean codec and parts."""
    client._batch_send = types.MethodType(_batch_send, client)
    client.submit_transaction = types.MethodType(_submit_transaction, client)
    return client
