"""The event bus: pattern matching, concurrent and isolated handlers, timeouts, skip set."""

from __future__ import annotations

import asyncio

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
