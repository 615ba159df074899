"""The event bus: pattern matching, concurrent and isolated handlers, timeouts, skip set."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from shared.events.bus import EventBus, pattern_matches
from shared.events.model import Event
from tests.unit.events.samples import make_event


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "users.updated", True),
        ("users.*", "users.deleted", True),
        ("users.*", "messages.deleted", False),
        ("*.deleted", "messages.deleted", True),
        ("*.deleted", "messages.created", False),
        ("users.updated", "users.updated", True),
        ("users.updated", "users.update", False),
    ],
)
def test_patterns_match_by_kind_and_change(pattern: str, event_type: str, expected: bool) -> None:
    """``*`` stands for a whole part or for everything."""
    assert pattern_matches(pattern, event_type) is expected


async def test_publish_runs_only_matching_handlers() -> None:
    """users.* and * hear users.updated; messages.* does not."""
    heard: list[str] = []
    bus = EventBus()
    for name, pattern in (("a", "users.*"), ("b", "messages.*"), ("c", "*")):

        async def handler(event: Event, name: str = name) -> None:
            heard.append(name)

        bus.subscribe(name, handler, [pattern])
    result = await bus.publish(make_event())
    assert sorted(heard) == ["a", "c"]
    assert [o.name for o in result.outcomes] == ["a", "c"]
    assert result.ok


async def test_handlers_run_concurrently() -> None:
    """Two handlers that each wait for the other finish: they were in flight at the same time."""
    first, second = asyncio.Event(), asyncio.Event()

    async def one(event: Event) -> None:
        first.set()
        await second.wait()

    async def two(event: Event) -> None:
        second.set()
        await first.wait()

    bus = EventBus(default_timeout=2)
    bus.subscribe("one", one, ["*"])
    bus.subscribe("two", two, ["*"])
    result = await bus.publish(make_event())
    assert [o.status for o in result.outcomes] == ["ok", "ok"]


async def test_a_failing_or_slow_handler_does_not_stop_the_others() -> None:
    """One raises, one times out, one succeeds: each gets its own outcome, the good one completes."""
    done: list[str] = []

    async def boom(event: Event) -> None:
        raise RuntimeError("broken")

    slow_started = asyncio.Event()

    async def slow(event: Event) -> None:
        slow_started.set()
        await asyncio.Event().wait()  # never answers: only its timeout ends it

    async def fine(event: Event) -> None:
        await slow_started.wait()  # still running while the slow one hangs
        done.append("fine")

    bus = EventBus()
    bus.subscribe("boom", boom, ["*"])
    bus.subscribe("slow", slow, ["*"], timeout=0.1)
    bus.subscribe("fine", fine, ["*"])
    result = await bus.publish(make_event())
    assert {o.name: o.status for o in result.outcomes} == {"boom": "failed", "slow": "timeout", "fine": "ok"}
    assert done == ["fine"]
    assert [o.name for o in result.failed] == ["boom", "slow"]
    assert "RuntimeError: broken" in (result.outcomes[0].error or "")


async def test_skipped_handlers_are_not_called() -> None:
    """Names in the skip set (already completed) are reported skipped and not run."""
    calls: list[str] = []

    async def handler(event: Event) -> None:
        calls.append("ran")

    bus = EventBus()
    bus.subscribe("done-before", handler, ["*"])
    result = await bus.publish(make_event(), skip={"done-before"})
    assert calls == []
    assert [o.status for o in result.outcomes] == ["skipped"]


@pytest.mark.parametrize(
    ("name", "patterns"),
    [("bad name!", ["*"]), ("ok", ["users"]), ("ok", ["users.*.x"]), ("ok", ["Users.*"]), ("ok", [])],
)
def test_invalid_names_and_patterns_fail_at_registration(name: str, patterns: list[str]) -> None:
    """Typos fail at startup rather than silently never matching."""

    async def handler(event: Event) -> None:
        return None

    with pytest.raises(ValueError, match=r"must match|invalid event patterns"):
        EventBus().subscribe(name, handler, patterns)


def test_handler_names_are_unique() -> None:
    """Markers are kept per handler name, so two handlers cannot share one."""

    async def handler(event: Event) -> None:
        return None

    bus = EventBus()
    bus.subscribe("same", handler, ["*"])
    with pytest.raises(ValueError, match="already registered"):
        bus.subscribe("same", handler, ["users.*"])


async def test_publish_many_gives_a_batch_handler_its_events_in_one_call_and_keeps_outcomes_per_event() -> None:
    """A batch handler gets the events it matches (minus skipped ones) in one call; the ids it reports failed
    fail alone, with the outage flag for a storage error; a per-event handler runs once per event."""
    from dataclasses import replace

    from shared.errors import StorageUnavailableError

    calls: list[list[str]] = []
    singles: list[str] = []

    async def batch(events: Sequence[Event]) -> Mapping[str, BaseException]:
        calls.append([e.id for e in events])
        return {"e2": StorageUnavailableError("down")}

    async def single(event: Event) -> None:
        singles.append(event.id)

    bus = EventBus()
    bus.subscribe("fwd", single, ["*"], batch=batch)
    bus.subscribe("one", single, ["users.*"])
    events = [replace(make_event(), id=f"e{n}") for n in range(4)]
    results = await bus.publish_many(events, skip=[(), (), (), ("fwd",)])
    assert calls == [["e0", "e1", "e2"]]
    assert sorted(singles) == ["e0", "e1", "e2", "e3"]
    by_event = [{o.name: (o.status, o.outage) for o in r.outcomes} for r in results]
    assert by_event[2]["fwd"] == ("failed", True)
    assert by_event[3]["fwd"] == ("skipped", False)
    assert by_event[0] == {"fwd": ("ok", False), "one": ("ok", False)}


async def test_a_batch_handler_that_raises_or_times_out_fails_every_event() -> None:
    """Raising fails all of its events; so does running past the handler's timeout."""

    async def boom(events: Sequence[Event]) -> Mapping[str, BaseException]:
        raise RuntimeError("broken")

    async def slow(events: Sequence[Event]) -> Mapping[str, BaseException]:
        await asyncio.sleep(5)
        return {}

    async def single(event: Event) -> None:
        return None

    bus = EventBus()
    bus.subscribe("boom", single, ["*"], batch=boom)
    bus.subscribe("slow", single, ["*"], batch=slow, timeout=0.05)
    (result,) = await bus.publish_many([make_event()])
    assert {o.name: o.status for o in result.outcomes} == {"boom": "failed", "slow": "timeout"}
