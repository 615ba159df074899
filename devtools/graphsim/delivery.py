"""Outgoing HTTP to subscribers, as Graph does it: the validation handshake, and change /
lifecycle notifications coalesced per URL and retried with exponential backoff.

An ``EventHub:`` notification URL is delivered to an event hub instead: each batch (one subscription's
items, with the subscription id as partition key) becomes one event whose body is the POST body Graph would
have sent, written to the stand-in namespace at ``eventhub_endpoint`` (the local harness serves one at
``<app>/_eventhubs``) in the Event Hubs REST shape: ``POST <endpoint>/<namespace>/<hub>/messages``.

Every attempt is recorded so tests can see retries, and ``wait_idle`` lets them wait
until nothing is pending instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from devtools.graphsim.clock import SimClock
from devtools.graphsim.config import SimConfig
from devtools.graphsim.subscriptions import EventHubAddress, eventhub_address
from devtools.graphsim.wire import JsonObj

MAX_RECORDS = 50_000
EVENTHUB_BATCH_TYPE = "application/vnd.microsoft.servicebus.json"
Key = tuple[str, str, str]  # (kind, URL, partition key or "")


@dataclass
class DeliveryRecord:
    """One HTTP attempt towards a subscriber."""

    seq: int
    time: float
    kind: str  # "notification" | "lifecycle" | "validation" (an event hub's validation message too)
    url: str
    items: int
    attempt: int
    status: int | None
    error: str | None
    latency_ms: float
    outcome: str  # "delivered" | "retrying" | "failed" | "validated" | "rejected"
    subscription_ids: list[str]

    def as_json(self) -> dict[str, Any]:
        """The record as the control API returns it."""
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "url": self.url,
            "items": self.items,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
            "outcome": self.outcome,
            "subscription_ids": self.subscription_ids,
        }


class Deliverer:
    """Queues notification items per (kind, URL) and posts them in coalesced batches."""

    def __init__(self, config: Callable[[], SimConfig], clock: SimClock) -> None:
        self._config = config
        self._clock = clock
        self._pending: dict[Key, list[JsonObj]] = {}
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._session: aiohttp.ClientSession | None = None
        self._seq = 0
        self.records: list[DeliveryRecord] = []
        # Top-level fields a POST carries beside "value" (rich notifications: validationTokens; rich.py).
        self.body_extras: Callable[[str, list[JsonObj]], JsonObj] = lambda _url, _batch: {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    # Notifications -------------------------------------------------------------------
    def enqueue(self, kind: str, url: str, items: list[JsonObj]) -> None:
        """Queue items for ``url``; items queued before the worker runs share a POST (an event hub: an event per
        subscription, so a subscription's events share a partition key)."""
        hub = eventhub_address(url) is not None
        for item in items:
            key = (kind, url, str(item.get("subscriptionId")) if hub else "")
            self._pending.setdefault(key, []).append(item)
            if key not in self._workers:
                self._idle.clear()
                self._workers[key] = asyncio.get_running_loop().create_task(self._drain(key))

    @property
    def pending(self) -> int:
        """Items queued but not yet delivered or given up on (in-flight batches excluded)."""
        return sum(len(items) for items in self._pending.values())

    async def _drain(self, key: Key) -> None:
        try:
            while self._pending.get(key):
                queue = self._pending[key]
                limit = self._config().max_items_per_post
                batch, self._pending[key] = queue[:limit], queue[limit:]
                await self._deliver(key[0], key[1], batch, key[2] or None)
        finally:
            self._pending.pop(key, None)
            self._workers.pop(key, None)
            if not self._workers:
                self._idle.set()

    async def _deliver(self, kind: str, url: str, batch: list[JsonObj], partition_key: str | None = None) -> None:
        # Validation tokens ride on webhook POSTs only (an event hub's events carry none).
        extras = {} if eventhub_address(url) is not None else self.body_extras(url, batch)
        payload = json.dumps({"value": batch, **extras}).encode()
        sub_ids = sorted({str(item.get("subscriptionId")) for item in batch})
        attempt = 0
        while True:
            attempt += 1
            config = self._config()
            hub = eventhub_address(url)
            if hub is None:
                status, error, latency = await self._post(url, payload, config.delivery_timeout_s)
            else:
                status, error, latency = await self._send_event(hub, payload, partition_key, config)
            ok = status is not None and 200 <= status < 300
            last = attempt >= config.delivery_max_attempts
            outcome = "delivered" if ok else ("failed" if last else "retrying")
            self._record(kind, url, len(batch), attempt, status, error, latency, outcome, sub_ids)
            if ok or last:
                return
            delay = min(config.delivery_backoff_s * 2 ** (attempt - 1), config.delivery_backoff_max_s)
            await asyncio.sleep(delay)

    async def _post(self, url: str, payload: bytes, timeout_s: float) -> tuple[int | None, str | None, float]:
        started = time.perf_counter()
        try:
            async with self._http().post(
                url,
                data=payload,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                await response.read()
                status: int | None = response.status
                error = None
        except TimeoutError:
            status, error = None, f"timeout after {timeout_s} s"
        except aiohttp.ClientError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        return status, error, (time.perf_counter() - started) * 1000

    async def _send_event(
        self, hub: EventHubAddress, payload: bytes, partition_key: str | None, config: SimConfig
    ) -> tuple[int | None, str | None, float]:
        """One event into the hub, through the stand-in namespace's REST-shaped send (201 when stored)."""
        if not config.eventhub_endpoint:
            return None, "no event hub stand-in configured (eventhub_endpoint)", 0.0
        url = f"{config.eventhub_endpoint.rstrip('/')}/{hub.namespace}/{quote(hub.hub, safe='')}/messages"
        event: JsonObj = {"Body": payload.decode("utf-8")}
        if partition_key is not None:
            event["BrokerProperties"] = {"PartitionKey": partition_key}
        started = time.perf_counter()
        try:
            async with self._http().post(
                url,
                data=json.dumps([event]).encode(),
                headers={"Content-Type": EVENTHUB_BATCH_TYPE},
                timeout=aiohttp.ClientTimeout(total=config.delivery_timeout_s),
            ) as response:
                await response.read()
                status: int | None = response.status
                error = None
        except TimeoutError:
            status, error = None, f"timeout after {config.delivery_timeout_s} s"
        except aiohttp.ClientError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        return status, error, (time.perf_counter() - started) * 1000

    def _record(
        self,
        kind: str,
        url: str,
        items: int,
        attempt: int,
        status: int | None,
        error: str | None,
        latency: float,
        outcome: str,
        sub_ids: list[str],
    ) -> None:
        self._seq += 1
        record = DeliveryRecord(
            self._seq,
            self._clock.now().timestamp(),
            kind,
            url,
            items,
            attempt,
            status,
            error,
            latency,
            outcome,
            sub_ids,
        )
        self.records.append(record)
        if len(self.records) > MAX_RECORDS:
            del self.records[: len(self.records) - MAX_RECORDS]

    # Validation handshake ----------------------------------------------------------------
    async def validate(self, url: str, subscription_hint: str) -> str | None:
        """Run Graph's handshake against ``url``; None when it passed, else why it failed.

        Graph POSTs ``?validationToken=<url-encoded token>`` with an empty text/plain body
        and wants 200, ``text/plain`` and exactly the decoded token back within 10 s.
        """
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
        timeout = self._config().handshake_timeout_s
        started = time.perf_counter()
        status: int | None = None
        problem: str | None
        try:
            async with self._http().post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                body = await response.text(errors="replace")
                problem = _handshake_problem(response.status, response.content_type, body, token)
        except TimeoutError:
            problem = "Subscription validation request timed out."
        except aiohttp.ClientError as exc:
            problem = f"Subscription validation request failed. {type(exc).__name__}: {exc}"
        latency = (time.perf_counter() - started) * 1000
        outcome = "validated" if problem is None else "rejected"
        self._record("validation", url, 0, 1, status, problem, latency, outcome, [subscription_hint])
        return problem

    # Lifecycle of the deliverer itself -------------------------------------------------------
    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def reset(self) -> None:
        """Cancel everything pending and forget the log."""
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.clear()
        self._workers.clear()
        self._idle.set()
        self.records.clear()

    async def close(self) -> None:
        """Stop deliveries and release the HTTP session (shutdown)."""
        await self.reset()
        if self._session is not None:
            await self._session.close()


def _handshake_problem(status: int, content_type: str, body: str, token: str) -> str | None:
    if status != 200:
        return (
            "Subscription validation request failed. Notification endpoint must respond with "
            f"200 OK to validation request (got {status})."
        )
    if content_type != "text/plain":
        return f"Subscription validation request failed. Response must be text/plain (got {content_type})."
    if body != token:
        return "Subscription validation request failed. Response must exactly match validationToken query parameter."
    return None
