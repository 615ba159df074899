"""A Storage queue listener that follows the host's queue trigger rules (``extensions.queues``).

- polls with back-off on empty reads, from 100 ms up to ``maxPollingInterval``;
- fetches ``batchSize`` messages and fetches again once at most ``newBatchThreshold`` are in flight, so
  at most ``batchSize + newBatchThreshold`` run at once;
- deletes a message when its invocation succeeds; on failure makes it visible again after
  ``visibilityTimeout``, or, once it has been dequeued ``maxDequeueCount`` times, copies it unchanged to
  ``<queue>-poison`` (created if missing) and deletes it;
- retries that settle step for up to ~30 s when storage is briefly unreachable; if it still fails, the
  message stays invisible until its 10-minute receive lease ends and is then delivered again;
- decodes the body per ``messageEncoding`` (``base64`` or ``none``); an undecodable body is a failure;
- creates the trigger queue if it does not exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import azure.functions as func
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devtools.funchost.bindings import decode_queue_message, queue_body_datum, queue_trigger_metadata
from devtools.funchost.config import MIN_POLLING_INTERVAL, QueueOptions, StorageConnection
from devtools.funchost.indexing import FunctionInfo
from devtools.funchost.invoke import Invoker

logger = logging.getLogger("funchost")

# How long a fetched message stays invisible while its invocation runs (the host's default, 10 min).
RECEIVE_VISIBILITY_TIMEOUT = 600
POISON_SUFFIX = "-poison"
# Pauses between attempts to settle a message (delete / release / move to poison): five attempts over
# about 30 s, each without the SDK's own retries, so a short storage outage does not leave the message
# invisible for the rest of its receive lease.
SETTLE_RETRY_DELAYS = (1.0, 3.0, 7.0, 15.0)


class QueueOperations(Protocol):
    """The part of ``azure.storage.queue.aio.QueueClient`` the listener uses (a seam for tests)."""

    def create_queue(self, **kwargs: Any) -> Awaitable[None]: ...

    def receive_messages(self, **kwargs: Any) -> Any: ...

    def delete_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> Awaitable[None]: ...

    def update_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> Awaitable[Any]: ...

    def send_message(self, content: Any, **kwargs: Any) -> Awaitable[Any]: ...

    def close(self) -> Awaitable[None]: ...


class MessageDecodeError(ValueError):
    """The message text is not valid for the configured ``messageEncoding``."""


def decode_body(content: object, encoding: str) -> bytes:
    """The message body the function sees: base64-decoded text, or the raw text as UTF-8."""
    if isinstance(content, bytes):
        raw = content
    elif isinstance(content, str):
        raw = content.encode("utf-8")
    elif content is None:
        raw = b""
    else:
        raise MessageDecodeError(f"unexpected message content type {type(content).__name__}")
    if encoding == "none":
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageDecodeError("message is not valid base64; check extensions.queues.messageEncoding") from exc


def to_function_message(message: QueueMessage, body: bytes) -> func.QueueMessage:
    """The ``azure.functions`` message the worker would pass: decoded by ``QueueMessageInConverter`` from
    the body and the trigger metadata the host sends (Id, DequeueCount, times, PopReceipt)."""
    metadata = queue_trigger_metadata(
        message_id=message.id,
        dequeue_count=message.dequeue_count,
        insertion_time=message.inserted_on,
        expiration_time=message.expires_on,
        next_visible_time=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )
    return decode_queue_message(queue_body_datum(body), metadata)


def is_transient(exc: AzureError) -> bool:
    """Worth retrying: no answer at all (connection refused/reset, timeout), throttling or a server error."""
    if isinstance(exc, HttpResponseError):
        return exc.status_code is None or exc.status_code in (408, 429) or exc.status_code >= 500
    return True


async def create_if_missing(client: QueueOperations) -> None:
    with contextlib.suppress(ResourceExistsError):
        await client.create_queue()


def open_queue_clients(
    connection: StorageConnection, queue_name: str, options: dict[str, Any]
) -> tuple[tuple[QueueClient, QueueClient], AsyncTokenCredential | None]:
    """The trigger and poison queue clients, and the managed identity they share (None with a connection
    string): ``ManagedIdentityCredential``, as the host uses for ``__credential=managedidentity``."""
    names = (queue_name, queue_name + POISON_SUFFIX)
    if connection.connection_string is not None:
        cs = connection.connection_string
        return (QueueClient.from_connection_string(cs, names[0], **options),
                QueueClient.from_connection_string(cs, names[1], **options)), None  # fmt: skip
    from azure.identity.aio import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=connection.client_id)
    url = connection.queue_service_uri or ""
    return (QueueClient(url, names[0], credential=credential, **options),
            QueueClient(url, names[1], credential=credential, **options)), credential  # fmt: skip


class QueueListener:
    """Polls one queue for one function until ``stop``."""

    def __init__(
        self,
        function: FunctionInfo,
        *,
        queue_name: str,
        connection: StorageConnection,
        options: QueueOptions,
        invoker: Invoker,
        clients: tuple[QueueOperations, QueueOperations] | None = None,
        settle_delays: Sequence[float] = SETTLE_RETRY_DELAYS,
        receive_lease: float = RECEIVE_VISIBILITY_TIMEOUT,
    ) -> None:
        """``clients`` (trigger queue, poison queue) replaces the Storage clients made from
        ``connection`` (tests pass fakes). ``receive_lease`` is how long a fetched message stays invisible
        (the host's 10 minutes unless the harness setting ``FUNCHOST_QUEUE_RECEIVE_LEASE`` shortens it)."""
        self.function = function
        self.queue_name = queue_name
        self._options = options
        self._invoker = invoker
        self._settle_delays = tuple(settle_delays)
        self._receive_lease = max(1, int(receive_lease))
        self._credential: AsyncTokenCredential | None = None
        if clients is None:
            # Short SDK retries: the poll loop retries anyway, and shutdown should not wait out a long
            # back-off. (The client builds its async ExponentialRetry from these keywords: ~1 s, 3 s, 5 s.)
            # No proxy lookup: aiohttp would otherwise read proxy settings and ~/.netrc in a thread per request.
            client_options: dict[str, Any] = {
                "initial_backoff": 1,
                "increment_base": 2,
                "retry_total": 3,
                "random_jitter_range": 0,
                "use_env_settings": False,
            }
            clients, self._credential = open_queue_clients(connection, queue_name, client_options)
        self._client: QueueOperations = clients[0]
        self._poison: QueueOperations = clients[1]
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        """Start polling in the background; storage being down does not block the host from starting."""
        self._poller = asyncio.create_task(self._poll(), name=f"funchost-queue-{self.queue_name}")

    async def _ensure_queue(self) -> None:
        """Create the trigger queue if missing (as the host does), retrying until storage answers."""
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            try:
                await create_if_missing(self._client)
                return
            except AzureError as exc:
                logger.warning("Queue '%s': cannot reach storage (%s); retrying", self.queue_name, exc)
                await self._sleep(delay)
                delay = min(delay * 2, self._options.max_polling_interval)

    async def stop(self, timeout: float) -> None:
        """Stop fetching, give the messages in flight ``timeout`` seconds to finish, close the clients.

        A message whose invocation is cut off is neither deleted nor released: it reappears once its
        fetch visibility lapses, as after a host crash.
        """
        self.request_stop()
        if self._poller is not None:
            # A receive in progress is short; a storage call stuck in retries is cut off.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._poller, timeout=min(timeout, 2.0))
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self._client.close()
        await self._poison.close()
        if self._credential is not None:
            await self._credential.close()

    def request_stop(self) -> None:
        """Stop fetching new messages now (``stop`` then waits for the ones in flight)."""
        self._stopping.set()
        self._room.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _poll(self) -> None:
        """Poll until stopped; an unexpected error is logged and polling resumes after a pause."""
        while not self._stopping.is_set():
            try:
                await self._poll_once_started()
            except Exception:
                logger.exception("Queue '%s': listener error; restarting in 1 s", self.queue_name)
                await self._sleep(1.0)

    async def _poll_once_started(self) -> None:
        await self._ensure_queue()
        delay = MIN_POLLING_INTERVAL
        options = self._options
        while not self._stopping.is_set():
            while len(self._tasks) > options.new_batch_threshold and not self._stopping.is_set():
                self._room.clear()
                await self._room.wait()
            if self._stopping.is_set():
                break
            try:
                messages = [
                    m
                    async for m in self._client.receive_messages(
                        messages_per_page=options.batch_size,
                        max_messages=options.batch_size,
                        visibility_timeout=self._receive_lease,
                        # One attempt: a retry inside the SDK would hide a receive whose answer was lost
                        # (its messages stay invisible for the lease); this loop retries and logs it.
                        retry_total=0,
                    )
                ]
            except AzureError as exc:
                logger.warning("Queue '%s': receive failed (%s); retrying", self.queue_name, exc)
                messages = []
                delay = max(delay, 1.0)
            if messages:
                delay = MIN_POLLING_INTERVAL
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
                continue
            await self._sleep(delay)
            delay = min(delay * 2, options.max_polling_interval)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) <= self._options.new_batch_threshold:
            self._room.set()

    async def _process(self, message: QueueMessage) -> None:
        dequeue_count = message.dequeue_count or 1
        if dequeue_count > self._options.max_dequeue_count:
            # Fetched more often than allowed without a recorded failure (e.g. a crash mid-invocation).
            await self._to_poison(message)
            return
        succeeded = False
        try:
            body = decode_body(message.content, self._options.message_encoding)
        except MessageDecodeError as exc:
            logger.error("Queue '%s': message %s: %s", self.queue_name, message.id, exc)
        else:
            reason = f"New queue message detected on '{self.queue_name}'."
            try:
                await self._invoker.invoke(self.function, to_function_message(message, body), reason=reason)
                succeeded = True
            except Exception:  # logged by the invoker; the message decides what happens next
                succeeded = False
        if succeeded:
            await self._settle(
                message,
                "delete it",
                lambda: self._client.delete_message(message.id, message.pop_receipt, retry_total=0),
            )
        elif dequeue_count >= self._options.max_dequeue_count:
            await self._to_poison(message)
        else:
            visibility = int(-(-self._options.visibility_timeout // 1))
            await self._settle(
                message,
                "make it visible again",
                lambda: self._client.update_message(
                    message.id, message.pop_receipt, visibility_timeout=visibility, retry_total=0
                ),
            )

    async def _settle(self, message: QueueMessage, what: str, operation: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``operation`` until it succeeds, pausing ``settle_delays`` between attempts; False if it
        never did (then the message reappears when its receive lease ends, as after a crash)."""
        attempts = len(self._settle_delays) + 1
        for attempt in range(1, attempts + 1):
            try:
                await operation()
                return True
            except AzureError as exc:
                if not is_transient(exc):  # e.g. 404: the lease passed or the message is gone; retrying cannot help
                    logger.warning("Queue '%s': could not %s (message %s): %s", self.queue_name, what, message.id, exc)
                    return False
                if attempt == attempts:
                    logger.warning(
                        "Queue '%s': could not %s (message %s) after %d attempts: %s. It becomes visible again "
                        "when its %d s receive lease ends.",
                        self.queue_name,
                        what,
                        message.id,
                        attempts,
                        exc,
                        self._receive_lease,
                    )
                    return False
                delay = self._settle_delays[attempt - 1]
                logger.info(
                    "Queue '%s': could not %s (message %s): %s; retrying in %g s",
                    self.queue_name,
                    what,
                    message.id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        return False

    async def _to_poison(self, message: QueueMessage) -> None:
        """Copy the message text unchanged (same encoding) to the poison queue, then delete it."""
        poison_name = self.queue_name + POISON_SUFFIX
        logger.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self._options.max_dequeue_count,
            poison_name,
        )

        async def copy() -> None:
            await create_if_missing(self._poison)
            await self._poison.send_message(message.content, retry_total=0)

        if await self._settle(message, f"copy it to '{poison_name}'", copy):
            await self._settle(
                message,
                "delete it",
                lambda: self._client.delete_message(message.id, message.pop_receipt, retry_total=0),
            )
