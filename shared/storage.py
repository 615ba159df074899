"""Table and queue access shared by every component: one error type, safe keys, tables created on demand.

**One storage-error layer.** Every Table and Queue client the app uses comes from ``Tables``/``Queues``
wrapped in ``GuardedClient``: a failure that means "Storage did not answer" (connection refused or
dropped, timeout, 5xx, 408/429, 401/403) becomes ``StorageUnavailableError`` at the call, whatever SDK
class raised it, so callers degrade by policy with one ``except``. Answers about data (404 not found,
409 exists, 412 changed) are not outages and keep their SDK types. ``storage_call`` applies the same
translation to a time-boxed block (an expired deadline is an outage too).

**Created on demand.** A table or queue is not created ahead of its first use: a call that meets
``TableNotFound``/``QueueNotFound`` creates it (if-not-exists) and runs once more, and a listing of one that
does not exist is empty. A deployed app's tables and queues exist after its first minutes, so each cold
process no longer pays two creation round trips before its first answer (the first 202 reads the registry
and sends to a queue).

Table keys must not contain ``/ \\ # ?`` or control characters and are limited to 1 KiB, so any key
derived from user or Graph input goes through ``safe_key`` (readable when harmless, hashed otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.errors import StorageUnavailableError

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient, TableServiceClient
    from azure.storage.queue.aio import QueueClient, QueueServiceClient

# A queue message may hold 64 KiB; our messages are base64 text (4 characters per 3 bytes).
QUEUE_MESSAGE_MAX_BYTES = 64 * 1024
QUEUE_MESSAGE_MAX_TEXT_BYTES = QUEUE_MESSAGE_MAX_BYTES // 4 * 3

_T = TypeVar("_T")


def is_outage(error: BaseException) -> bool:
    """True when ``error`` says Storage did not answer properly; False for answers about data."""
    from azure.core.exceptions import (
        AzureError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )

    if isinstance(error, StorageUnavailableError):
        return True
    if isinstance(error, ResourceNotFoundError | ResourceExistsError | ResourceModifiedError):
        return False
    if isinstance(error, HttpResponseError):
        status = error.status_code
        return status is None or status >= 500 or status in (401, 403, 408, 429)
    return isinstance(error, AzureError | OSError | TimeoutError)


def unavailable(operation: str, error: BaseException) -> StorageUnavailableError:
    """The one error for an outage; names the operation and the SDK's class, never a URL or key."""
    if isinstance(error, StorageUnavailableError):
        return error
    from azure.core.exceptions import ServiceResponseError

    status = getattr(error, "status_code", None)
    detail = f"{type(error).__name__}" + (f" {status}" if status else "")
    sent = isinstance(error, ServiceResponseError | TimeoutError)  # the request went out; its answer did not come
    return StorageUnavailableError(f"storage {operation} failed: {detail}", ambiguous=sent)


@contextlib.contextmanager
def translated(operation: str) -> Iterator[None]:
    """An outage raised in the block leaves it as ``StorageUnavailableError``; anything else unchanged."""
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise unavailable(operation, error) from error
        raise


@contextlib.asynccontextmanager
async def storage_call(operation: str, timeout: float | None = None) -> AsyncIterator[None]:
    """Run a block of Storage calls within ``timeout``; an outage or an expired deadline raises
    ``StorageUnavailableError`` (answers about data pass through unchanged)."""
    with translated(operation):
        async with asyncio.timeout(timeout):
            yield


@dataclass(frozen=True)
class OutageWait:
    """How long work that must not be lost waits for Storage to come back, retrying in place, before it
    gives up and leaves the retry to queue redelivery (which may itself be delayed by the outage)."""

    budget_seconds: float = 60.0
    first_delay: float = 0.25
    max_delay: float = 4.0

    async def run(self, call: Callable[[], Awaitable[_T]], deadline: float | None = None) -> _T:
        """``call()`` until it does not raise ``StorageUnavailableError`` or the deadline (monotonic
        seconds; default: ``budget_seconds`` from now) has passed; then the last error is raised."""
        deadline = time.monotonic() + self.budget_seconds if deadline is None else deadline
        delay = self.first_delay
        while True:
            try:
                return await call()
            except StorageUnavailableError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, self.max_delay)


class CallCount:
    """Storage calls made in a ``counting_calls`` block (and the tasks it started), and how many of them
    were answered 409 or 412 (a row another writer made or changed first: contention between instances)."""

    def __init__(self) -> None:
        self.calls = 0
        self.conflicts = 0


Create = Callable[[], Awaitable[None]]  # makes a missing table or queue (if-not-exists)

_counting: contextvars.ContextVar[CallCount | None] = contextvars.ContextVar("storage_call_count", default=None)


@contextlib.contextmanager
def counting_calls() -> Iterator[CallCount]:
    """Count every call through a guarded client in this block, so a component can report what its
    work cost in Storage calls (counted at the call, not estimated); a query counts once."""
    count = CallCount()
    token = _counting.set(count)
    try:
        yield count
    finally:
        _counting.reset(token)


# A span around each awaited client call, when tracing is on: set by the composition root (this module imports
# no metrics), called with the method's name and the SDK client (its table or queue name and endpoint).
CallSpan = Callable[[str, Any], contextlib.AbstractContextManager[Any]]
_call_span: CallSpan | None = None


def trace_calls(span: CallSpan | None) -> None:
    """Open ``span(method, client)`` around every awaited Table/Queue call from now on (None: stop)."""
    global _call_span
    _call_span = span


_MISSING_CONTAINER = frozenset({"TableNotFound", "QueueNotFound"})


def is_missing_container(error: BaseException) -> bool:
    """True when ``error`` says the table or queue itself does not exist (not a row or a message).

    The SDK leaves ``error_code`` empty on some answers (a Table insert's 404), so the header decides too."""
    if getattr(error, "status_code", None) != 404:
        return False
    code = getattr(error, "error_code", None)
    if code is None:
        response = getattr(error, "response", None)
        code = response.headers.get("x-ms-error-code") if response is not None else None
    return getattr(code, "value", code) in _MISSING_CONTAINER  # the SDK's codes are str enums


class _GuardedPages:
    """An SDK async pager whose iteration failures are translated like every other call; with
    ``empty_if_missing``, a listing of a table or queue that does not exist is empty."""

    def __init__(self, pages: Any, operation: str, empty_if_missing: bool) -> None:
        self._pages = pages
        self._operation = operation
        self._empty_if_missing = empty_if_missing

    def __aiter__(self) -> _GuardedPages:
        return self

    async def __anext__(self) -> Any:
        try:
            with translated(self._operation):
                return await self._pages.__anext__()
        except Exception as error:
            if self._empty_if_missing and is_missing_container(error):
                raise StopAsyncIteration from None
            raise


class GuardedClient:
    """Forwards every attribute to an SDK Table/Queue client; failures of its calls that are outages
    become ``StorageUnavailableError``. Typed as the client it wraps (``guard``), so callers keep the
    SDK's signatures. With ``create``, a call that finds its table or queue missing creates it (``create()``)
    and runs once more, and a listing of a missing one is empty."""

    def __init__(self, client: Any, name: str, create: Create | None = None) -> None:
        self._client = client
        self._name = name
        self._create = create

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._client, attribute)
        if not callable(value):
            return value
        operation = f"{self._name}.{attribute}"

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            count = _counting.get()
            if count is not None:
                count.calls += 1
            with translated(operation):
                result = value(*args, **kwargs)
            if inspect.isawaitable(result):
                awaited = _guarded_await(result, operation, attribute, self._client)
                if self._create is None:
                    return awaited
                return _again_if_missing(awaited, self._create, lambda: call_again(*args, **kwargs))
            if hasattr(result, "__anext__"):
                return _GuardedPages(result, operation, empty_if_missing=self._create is not None)
            return result

        def call_again(*args: Any, **kwargs: Any) -> Any:
            count = _counting.get()
            if count is not None:
                count.calls += 1
            with translated(operation):
                result = value(*args, **kwargs)
            return _guarded_await(result, operation, attribute, self._client)

        setattr(self, attribute, call)  # built once per method: later lookups skip __getattr__
        return call


async def _guarded_await(awaitable: Awaitable[_T], operation: str, method: str, client: Any) -> _T:
    span = _call_span(method, client) if _call_span is not None else contextlib.nullcontext()
    try:
        with translated(operation), span:  # the span sees the SDK's own error type
            return await awaitable
    except Exception as error:  # the SDK's HttpResponseError (not imported here: no SDK at import time)
        count = _counting.get()
        if count is not None and getattr(error, "status_code", None) in (409, 412):
            count.conflicts += 1
        raise


async def _again_if_missing(first: Awaitable[_T], create: Create, again: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return await first
    except Exception as error:
        if not is_missing_container(error):
            raise
    await create()
    return await again()


def guard(client: _T, name: str, create: Create | None = None) -> _T:
    """``client`` behind the storage-error layer, still typed as ``client``; with ``create``, its table or
    queue is created on demand."""
    if isinstance(client, GuardedClient):
        return client
    return cast(_T, GuardedClient(client, name, create))


_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f%]")
MAX_READABLE_KEY = 200


def hashed_key(text: str) -> str:
    """A fixed-length key (64 hex chars) for any text: collision-free in practice, always valid."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def safe_key(text: str) -> str:
    """``text`` itself when it is short and has no forbidden characters, else ``h-`` + its hash.

    The prefix keeps the two spaces apart: no readable key starts with ``h-`` and 64 hex digits.
    """
    if len(text) <= MAX_READABLE_KEY and text and not _UNSAFE.search(text) and not text.startswith("h-"):
        return text
    return "h-" + hashed_key(text)


class Tables:
    """Hands out table clients by short name (``cache`` → ``<prefix>cache``); tables are created on demand."""

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self._prefix = prefix
        self._ready: dict[str, TableClient] = {}

    def name(self, short_name: str) -> str:
        return f"{self._prefix}{short_name}"

    async def get(self, short_name: str) -> TableClient:
        """The table's client (no Storage call: a call that finds no table creates it)."""
        client = self._ready.get(short_name)
        if client is None:
            from shared.table_batch import use_lean_transactions

            name = self.name(short_name)

            async def create() -> None:
                async with storage_call(f"create table {short_name}"):
                    await self._service.create_table_if_not_exists(name)

            sdk_client = use_lean_transactions(self._service.get_table_client(name))
            client = self._ready[short_name] = guard(sdk_client, f"table {short_name}", create)
        return client


class Queues:
    """Hands out queue clients by name; queues are created on demand.

    Message text is base64-encoded on send and decoded on receive, as queue triggers expect it
    (host.json ``messageEncoding``). The policies must be given per queue client: a queue client made
    by ``QueueServiceClient.get_queue_client`` does not inherit the service client's.
    """

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._ready: dict[str, QueueClient] = {}

    async def get(self, name: str) -> QueueClient:
        """The queue's client (no Storage call: a call that finds no queue creates it)."""
        client = self._ready.get(name)
        if client is None:
            from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

            queue = self._service.get_queue_client(
                name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
            )

            async def create() -> None:
                from azure.core.exceptions import ResourceExistsError

                async with storage_call(f"create queue {name}"):
                    with contextlib.suppress(ResourceExistsError):
                        await queue.create_queue()

            client = self._ready[name] = guard(queue, f"queue {name}", create)
        return client
