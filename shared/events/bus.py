"""An in-process event bus: handlers subscribe by event-name pattern; publish runs them concurrently.

Patterns are ``kind.change`` with ``*`` for either part (``users.*``, ``*.deleted``) or ``*`` alone.
Each handler has a unique name (dedupe markers are kept per handler name) and a timeout. ``publish``
isolates handlers from each other: one failing or timing out never stops or cancels the others, and
the caller gets one outcome per handler. ``skip`` names handlers that already completed for this event
(the exactly-once dispatcher passes them), so a redelivery runs only what is left.

``publish_many`` takes the events of a whole queue message: a handler registered with a ``batch`` function
gets all its events in one call (the forwarder packs them into few queue messages, cache invalidation
writes each stale group once), others run once per event. Outcomes stay per event and per handler.

The bus knows nothing of queues or dedupe, so the queue processor and delta catch-up share it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.concurrency import gather_bounded
from shared.errors import StorageUnavailableError
from shared.events.model import Event
from shared.telemetry import get_logger

log = get_logger("events.bus")

Handler = Callable[[Event], Awaitable[None]]
# Runs a handler on many events in one call; returns the events that failed (id → error); raising fails all.
BatchHandler = Callable[[Sequence[Event]], Awaitable[Mapping[str, BaseException]]]
EVENT_CONCURRENCY = 16  # events one per-event handler runs at once within ``publish_many``
# "unrecorded": the handler ran, but the dispatcher could not record it done; it still counts as failed.
OutcomeStatus = Literal["ok", "failed", "timeout", "unrecorded", "skipped"]

FAILED: tuple[OutcomeStatus, ...] = ("failed", "timeout", "unrecorded")

_PATTERN = re.compile(r"\*|(\*|[a-z0-9]+)\.(\*|[a-z0-9]+)")
_HANDLER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Registration:
    """A handler, the patterns it listens to, how long one call may take, and whether its effect must
    happen once per event (``once``) or is idempotent and simply runs on every delivery."""

    name: str
    handler: Handler
    patterns: tuple[str, ...]
    timeout: float
    once: bool = True
    batch: BatchHandler | None = None

    def matches(self, event_type: str) -> bool:
        return any(pattern_matches(p, event_type) for p in self.patterns)


@dataclass(frozen=True)
class HandlerOutcome:
    name: str
    status: OutcomeStatus
    duration_ms: float = 0.0
    error: str | None = None
    outage: bool = False  # it failed because Storage did not answer: worth retrying in place


@dataclass(frozen=True)
class PublishResult:
    """One outcome per matching handler, in registration order."""

    event_type: str
    outcomes: tuple[HandlerOutcome, ...]

    @property
    def failed(self) -> tuple[HandlerOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status in FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed


def pattern_matches(pattern: str, event_type: str) -> bool:
    """``*`` matches everything; otherwise each dot-separated part is equal or ``*``."""
    if pattern == "*":
        return True
    kind, _, change = pattern.partition(".")
    event_kind, _, event_change = event_type.partition(".")
    return kind in ("*", event_kind) and change in ("*", event_change)


class EventBus:
    """Holds registrations (made at startup) and publishes events to the matching ones."""

    def __init__(self, *, default_timeout: float = 10.0) -> None:
        self._default_timeout = default_timeout
        self._registrations: list[Registration] = []

    def subscribe(
        self,
        name: str,
        handler: Handler,
        patterns: Iterable[str],
        *,
        timeout: float | None = None,
        once: bool = True,
        batch: BatchHandler | None = None,
    ) -> Registration:
        """Register ``handler`` under a unique ``name``; invalid names or patterns fail at startup.
        ``batch``, if given, is used instead of ``handler`` by ``publish_many``."""
        patterns = tuple(patterns)
        if not _HANDLER_NAME.fullmatch(name):
            raise ValueError(f"handler name {name!r} must match {_HANDLER_NAME.pattern}")
        if any(r.name == name for r in self._registrations):
            raise ValueError(f"a handler named {name!r} is already registered")
        bad = [p for p in patterns if not _PATTERN.fullmatch(p)]
        if bad or not patterns:
            raise ValueError(
                f"invalid event patterns {bad or patterns!r}: use 'kind.change', 'kind.*', '*.change', '*'"
            )
        registration = Registration(name, handler, patterns, timeout or self._default_timeout, once, batch)
        self._registrations.append(registration)
        return registration

    def handlers_for(self, event_type: str) -> list[Registration]:
        return [r for r in self._registrations if r.matches(event_type)]

    async def publish(self, event: Event, *, skip: Collection[str] = ()) -> PublishResult:
        """Run every matching handler not in ``skip`` concurrently; never raises for a handler's failure."""
        registrations = self.handlers_for(event.type)
        outcomes = await asyncio.gather(
            *(_skipped(r.name) if r.name in skip else _run(r, event) for r in registrations)
        )
        return PublishResult(event.type, tuple(outcomes))

    async def publish_many(
        self,
        events: Sequence[Event],
        *,
        skip: Sequence[Collection[str]] = (),
    ) -> list[PublishResult]:
        """``publish`` for many events (``skip[i]`` for ``events[i]``): each handler runs once over its
        events (batch handlers in one call). One result per event, in order."""
        skips = list(skip) or [()] * len(events)
        outcomes: list[dict[str, HandlerOutcome]] = [{} for _ in events]

        async def handler(registration: Registration) -> None:
            wanted = [i for i, e in enumerate(events) if registration.matches(e.type)]
            for i in wanted:
                if registration.name in skips[i]:
                    outcomes[i][registration.name] = HandlerOutcome(registration.name, "skipped")
            todo = [i for i in wanted if registration.name not in skips[i]]
            if not todo:
                return
            ran = await _run_many(registration, [events[i] for i in todo])
            for i, outcome in zip(todo, ran, strict=True):
                outcomes[i][registration.name] = outcome

        registrations = self._registrations
        await asyncio.gather(*(handler(r) for r in registrations))
        return [
            PublishResult(e.type, tuple(o[r.name] for r in registrations if r.name in o))
            for e, o in zip(events, outcomes, strict=True)
        ]


async def _run_many(registration: Registration, events: Sequence[Event]) -> list[HandlerOutcome]:
    """One outcome per event: the batch function once, or the handler per event (bounded)."""
    if registration.batch is None:
        return await gather_bounded(events, EVENT_CONCURRENCY, lambda e: _run(registration, e))
    started = time.perf_counter()
    name = registration.name
    try:
        async with asyncio.timeout(registration.timeout):
            failures = await registration.batch(events)
    except TimeoutError:
        elapsed = (time.perf_counter() - started) * 1000
        log.warning("handler %s timed out after %.0f ms on %d events", name, elapsed, len(events))
        return [HandlerOutcome(name, "timeout", elapsed, f"timed out after {registration.timeout} s") for _ in events]
    except Exception as error:
        log.warning("handler %s failed on %d events", name, len(events), exc_info=not _is_outage(error))
        failures = {e.id: error for e in events}
    elapsed = (time.perf_counter() - started) * 1000
    for event in events:
        if event.id in failures:  # one line per event, with its id (the fault matrix reads them)
            log.warning("handler %s failed on %s %s", name, event.type, event.id)
    return [_outcome(name, failures.get(e.id), elapsed) for e in events]


def _is_outage(error: BaseException) -> bool:
    return isinstance(error, StorageUnavailableError)


def _outcome(name: str, error: BaseException | None, elapsed: float) -> HandlerOutcome:
    if error is None:
        return HandlerOutcome(name, "ok", elapsed)
    return HandlerOutcome(name, "failed", elapsed, f"{type(error).__name__}: {error}", _is_outage(error))


async def _skipped(name: str) -> HandlerOutcome:
    return HandlerOutcome(name, "skipped")


async def _run(registration: Registration, event: Event) -> HandlerOutcome:
    started = time.perf_counter()
    name = registration.name
    try:
        async with asyncio.timeout(registration.timeout):
            await registration.handler(event)
    except TimeoutError:
        elapsed = (time.perf_counter() - started) * 1000
        log.warning("handler %s timed out after %.0f ms on %s %s", name, elapsed, event.type, event.id)
        return HandlerOutcome(name, "timeout", elapsed, f"timed out after {registration.timeout} s")
    except Exception as error:
        elapsed = (time.perf_counter() - started) * 1000
        outage = isinstance(error, StorageUnavailableError)
        log.warning("handler %s failed on %s %s", name, event.type, event.id, exc_info=not outage)
        return HandlerOutcome(name, "failed", elapsed, f"{type(error).__name__}: {error}", outage)
    return HandlerOutcome(name, "ok", (time.perf_counter() - started) * 1000)
