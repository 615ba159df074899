"""An in-process event bus: handlers subscribe by event-name pattern; publish runs them concurrently.

Patterns are ``kind.change`` with ``*`` for either part (``users.*``, ``*.deleted``) or ``*`` alone.
Each handler has a unique name (dedupe markers are kept per handler name) and a timeout. ``publish``
isolates handlers from each other: one failing or timing out never stops or cancels the others, and
the caller gets one outcome per handler. ``skip`` names handlers that already completed for this event
(the exactly-once dispatcher passes them), so a redelivery runs only what is left.

The bus knows nothing of queues or dedupe, so the queue processor and delta catch-up share it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from shared.errors import StorageUnavailableError
from shared.events.model import Event
from shared.telemetry import get_logger

log = get_logger("events.bus")

Handler = Callable[[Event], Awaitable[None]]
# Called with a handler's name right after it succeeded (the dispatcher records it done at once).
OnSuccess = Callable[[str], Awaitable[None]]
# "unrecorded": the handler ran, but ``on_success`` (recording it) failed; it still counts as failed.
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
    ) -> Registration:
        """Register ``handler`` under a unique ``name``; invalid names or patterns fail at startup."""
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
        registration = Registration(name, handler, patterns, timeout or self._default_timeout, once)
        self._registrations.append(registration)
        return registration

    def handlers_for(self, event_type: str) -> list[Registration]:
        return [r for r in self._registrations if r.matches(event_type)]

    async def publish(
        self, event: Event, *, skip: Collection[str] = (), on_success: OnSuccess | None = None
    ) -> PublishResult:
        """Run every matching handler not in ``skip`` concurrently; never raises for a handler's failure.
        ``on_success(name)`` runs right after each handler that succeeded; if it fails, so does the outcome."""
        registrations = self.handlers_for(event.type)
        outcomes = await asyncio.gather(
            *(_skipped(r.name) if r.name in skip else _run(r, event, on_success) for r in registrations)
        )
        return PublishResult(event.type, tuple(outcomes))


async def _skipped(name: str) -> HandlerOutcome:
    return HandlerOutcome(name, "skipped")


async def _run(registration: Registration, event: Event, on_success: OnSuccess | None) -> HandlerOutcome:
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
    if on_success is not None:
        try:
            await on_success(name)
        except Exception as error:
            elapsed = (time.perf_counter() - started) * 1000
            log.warning("handler %s ran on %s %s but could not be recorded: %s", name, event.type, event.id, error)
            # Not an outage to retry in place: the effect happened, running it again would repeat it.
            return HandlerOutcome(name, "unrecorded", elapsed, f"ran, not recorded: {type(error).__name__}")
    return HandlerOutcome(name, "ok", (time.perf_counter() - started) * 1000)
