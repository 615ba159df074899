"""The load a fault cell puts on the app, and what it observes: webhook senders that redeliver like Graph,
API probes, and a reader of ``graph-events``. Everything runs in threads with bounded waits, so the test's
main thread stays free to stop and restart Azurite."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.events.outbound import decode_events

EVENTS_QUEUE = "graph-events"
NOTIFICATIONS_QUEUE = "graph-notifications"
ITEMS_PER_POST = 10
RESEND_AFTER_S = 1.0  # Graph backs off longer; a short back-off keeps the cells short and the pressure on
WEBHOOK_TIMEOUT_S = 10.0  # far beyond Graph's own patience (~3 s), so only a hung endpoint times out
API_TIMEOUT_S = 30.0
TENANT_ID = "00000000-0000-0000-0000-0000000000aa"


@dataclass(frozen=True)
class HttpRecord:
    """One request a cell made: what, when (wall clock) and how it was answered."""

    kind: str  # webhook | users | health | admin
    started: float
    ended: float
    status: int | str  # an HTTP status, or "timeout" / "connection_error"
    retry_after: str | None = None
    x_cache: str | None = None
    target: str | None = None  # the user id or the timer name

    def inside(self, start: float, end: float) -> bool:
        """Whether the request was both sent and answered inside ``[start, end]``."""
        return start <= self.started and self.ended <= end


class Recorder:
    """Thread-safe log of every request of one cell."""

    def __init__(self) -> None:
        self._records: list[HttpRecord] = []
        self._lock = threading.Lock()

    def add(self, record: HttpRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, kind: str | None = None) -> list[HttpRecord]:
        with self._lock:
            return [r for r in self._records if kind is None or r.kind == kind]


def timed_request(
    client: httpx.Client,
    recorder: Recorder,
    kind: str,
    method: str,
    url: str,
    *,
    target: str | None = None,
    **kwargs: Any,
) -> tuple[HttpRecord, httpx.Response | None]:
    """Send one request and record its outcome; a timeout or connection error is recorded, not raised."""
    started = time.time()
    status: int | str
    response: httpx.Response | None = None
    try:
        response = client.request(method, url, **kwargs)
        status = response.status_code
    except httpx.TimeoutException:
        status = "timeout"
    except httpx.HTTPError:
        status = "connection_error"
    record = HttpRecord(
        kind=kind,
        started=started,
        ended=time.time(),
        status=status,
        retry_after=response.headers.get("Retry-After") if response is not None else None,
        x_cache=response.headers.get("X-Cache") if response is not None else None,
        target=target,
    )
    recorder.add(record)
    return record, response


# --- The webhook ---------------------------------------------------------------------------------------


@dataclass
class Post:
    """One notification POST; re-sent byte for byte until it is acknowledged (202), as Graph redelivers."""

    index: int
    body: bytes
    message_ids: tuple[str, ...]
    statuses: list[int | str] = field(default_factory=list)
    acked_at: float | None = None


def make_posts(tag: str, subscription_id: str, client_state: str, posts: int, user_id: str) -> list[Post]:
    """``posts`` POSTs of ``ITEMS_PER_POST`` distinct messages.created items (own message id and etag each,
    so the processor's dedupe keeps every one and each maps to exactly one event)."""
    result = []
    counter = itertools.count()
    for index in range(posts):
        items: list[dict[str, Any]] = []
        message_ids: list[str] = []
        for _ in range(ITEMS_PER_POST):
            n = next(counter)
            message_id = f"AAMk{tag}{n:06d}="
            resource = f"Users/{user_id}/Messages/{message_id}"
            message_ids.append(message_id)
            items.append(
                {
                    "subscriptionId": subscription_id,
                    "changeType": "created",
                    "resource": resource,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Message",
                        "@odata.id": resource,
                        "@odata.etag": f'W/"CQAAAB{tag}{n:06d}"',
                        "id": message_id,
                    },
                    "clientState": client_state,
                    "tenantId": TENANT_ID,
                }
            )
        body = json.dumps({"value": items}).encode()
        result.append(Post(index, body, tuple(message_ids)))
    return result


class WebhookSenders:
    """A few concurrent senders working through a schedule of POSTs; a POST not answered 202 goes back
    into the schedule ``RESEND_AFTER_S`` later, unchanged (a 4xx is not retried, as Graph would not)."""

    def __init__(self, url: str, recorder: Recorder, senders: int) -> None:
        self._url = url
        self._recorder = recorder
        self._heap: list[tuple[float, int, Post]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"sender-{i}", daemon=True) for i in range(senders)]
        self.posts: list[Post] = []

    def schedule(self, posts: Sequence[Post], start_at: float, spread_s: float) -> None:
        """Send ``posts`` spread evenly over ``spread_s`` seconds from ``start_at`` (wall clock)."""
        step = spread_s / len(posts) if posts else 0.0
        with self._lock:
            for i, post in enumerate(posts):
                self.posts.append(post)
                heapq.heappush(self._heap, (start_at + i * step, next(self._seq), post))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=WEBHOOK_TIMEOUT_S + 5)

    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def wait_all_acked(self, posts: Iterable[Post], deadline: float) -> bool:
        """Wait (until ``deadline``, wall clock) for every post in ``posts`` to be acknowledged."""
        wanted = list(posts)
        while time.time() < deadline:
            if all(p.acked_at is not None for p in wanted):
                return True
            time.sleep(0.05)
        return all(p.acked_at is not None for p in wanted)

    def _next(self) -> Post | None:
        with self._lock:
            if self._heap and self._heap[0][0] <= time.time():
                return heapq.heappop(self._heap)[2]
        return None

    def _run(self) -> None:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as client:
            while not self._stop.is_set():
                post = self._next()
                if post is None:
                    time.sleep(0.02)
                    continue
                record, _ = timed_request(
                    client,
                    self._recorder,
                    "webhook",
                    "POST",
                    self._url,
                    content=post.body,
                    headers={"content-type": "application/json"},
                )
                status = record.status
                post.statuses.append(status)
                if status == 202:
                    post.acked_at = time.time()
                elif not (isinstance(status, int) and 400 <= status < 500):
                    with self._lock:
                        heapq.heappush(self._heap, (time.time() + RESEND_AFTER_S, next(self._seq), post))


# --- Probes of the other routes ------------------------------------------------------------------------


class Prober:
    """Calls one route over and over (``interval_s`` apart) in a thread until stopped."""

    def __init__(self, name: str, call: Callable[[httpx.Client], None], interval_s: float) -> None:
        self._call = call
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=API_TIMEOUT_S + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=API_TIMEOUT_S) as client:
            while not self._stop.is_set():
                self._call(client)
                self._stop.wait(self._interval)


# --- graph-events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenEvent:
    """One event found in ``graph-events``: its id, the message it names, and when it appeared there."""

    event_id: str
    message_id: str | None
    appeared_at: float


def events_in(body: str) -> list[dict[str, Any]]:
    """The events of one ``graph-events`` message (the app's own decoder: a bare event or the v2 envelope);
    ``ValueError`` for anything else."""
    return decode_events(body)


class EventCollector:
    """Receives and deletes everything in ``graph-events`` (base64 JSON, as ``shared.storage.Queues`` writes
    it), keeping each event once per queue message: a message seen again because its delete failed in an
    outage is the same message, not a duplicate. Storage errors are counted and retried."""

    def __init__(self, connection_string: str) -> None:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        self._client = QueueClient.from_connection_string(
            connection_string,
            EVENTS_QUEUE,
            message_decode_policy=TextBase64DecodePolicy(),
            retry_total=0,
            connection_timeout=2,
            read_timeout=5,
        )
        self.events: list[SeenEvent] = []
        self.undecodable = 0
        self.storage_errors = 0
        self._message_ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._client.close()

    def snapshot(self) -> list[SeenEvent]:
        with self._lock:
            return list(self.events)

    def _run(self) -> None:
        from azure.core.exceptions import AzureError

        while not self._stop.is_set():
            try:
                got = self._receive()
            except AzureError:
                self.storage_errors += 1
                got = 0
            if not got:
                self._stop.wait(0.25)

    def _receive(self) -> int:
        from azure.core.exceptions import AzureError

        # A short hold: a receive whose answer is lost in the outage hides its events only briefly.
        messages = list(self._client.receive_messages(max_messages=32, messages_per_page=32, visibility_timeout=5))
        now = time.time()
        for message in messages:
            if message.id not in self._message_ids:
                self._message_ids.add(message.id)
                # inserted_on has one-second resolution: +1 s never understates the delay.
                appeared = min(now, message.inserted_on.timestamp() + 1.0) if message.inserted_on else now
                try:
                    found = events_in(message.content)
                except (ValueError, TypeError):
                    self.undecodable += 1
                    found = []
                with self._lock:
                    self.events += [SeenEvent(str(e.get("id")), e.get("message_id"), appeared) for e in found]
            with contextlib.suppress(AzureError):
                self._client.delete_message(message)
        return len(messages)


def queue_depth(connection_string: str, queue: str) -> int | None:
    """Messages in ``queue`` incl. invisible ones (Azurite counts them all); None if storage does not answer."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(connection_string, queue, retry_total=0, connection_timeout=2) as client:
        try:
            return int(client.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0
        except AzureError:
            return None
