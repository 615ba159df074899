"""The shared clock: Table service time estimated from 1-second ``Date`` headers and write ETags."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import quote

import pytest

from shared.resilience import ServerClock

SERVER_OFFSET = 1_700_000_000.437  # service time minus our monotonic time, unknown to the clock


class Local:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def respond(clock: ServerClock, local: Local, round_trip: float = 0.004) -> None:
    """One request: sent now, generated mid-way (service time), received a round trip later."""
    sent = local.now
    generated = sent + round_trip / 2 + SERVER_OFFSET
    local.now += round_trip
    clock.observe(formatdate(math.floor(generated), usegmt=True), sent, local.now)


def test_before_any_response_the_local_wall_clock_is_used() -> None:
    """Until the service answered once, ``now`` is the local wall time."""
    clock = ServerClock(local=lambda: 5.0, wall=lambda: 1234.0)
    assert not clock.synced
    assert clock.now() == 1234.0
    assert clock.uncertainty == math.inf


def test_one_response_bounds_the_offset_within_a_second() -> None:
    """A single 1-second-resolution Date header puts service time within about half a second."""
    local = Local()
    clock = ServerClock(local=local)
    respond(clock, local)
    assert clock.synced
    assert abs(clock.offset - SERVER_OFFSET) <= 0.51
    assert clock.uncertainty <= 0.51


def test_responses_spread_over_seconds_narrow_it_to_a_round_trip() -> None:
    """Intersecting the bounds of responses at varied sub-second phases converges to ~the round-trip time."""
    local = Local()
    clock = ServerClock(local=local)
    for step in range(60):
        local.now += 0.137 + (step % 7) * 0.011
        respond(clock, local)
    assert abs(clock.offset - SERVER_OFFSET) <= 0.01
    assert clock.now() == pytest.approx(local.now + SERVER_OFFSET, abs=0.01)


def test_a_clock_step_restarts_the_estimate() -> None:
    """If a response contradicts the known bounds (clock stepped), the estimate restarts from it."""
    local = Local()
    clock = ServerClock(local=local)
    respond(clock, local)
    sent = local.now
    local.now += 0.004
    clock.observe(formatdate(sent + SERVER_OFFSET + 3600, usegmt=True), sent, local.now)
    assert abs(clock.offset - (SERVER_OFFSET + 3600)) <= 1.0


@pytest.mark.parametrize("header", [None, "", "yesterday", "Mon, 99 Foo 2025"])
def test_missing_or_malformed_dates_are_ignored(header: str | None) -> None:
    """A response without a usable Date header teaches nothing and breaks nothing."""
    clock = ServerClock(local=lambda: 1.0, wall=lambda: 50.0)
    clock.observe(header, 0.9, 1.0)
    assert not clock.synced


def etag_at(server_time: float) -> str:
    stamp = datetime.fromtimestamp(server_time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z"
    return f"W/\"datetime'{quote(stamp)}'\""


def test_a_write_etag_pins_service_time_to_one_round_trip() -> None:
    """The commit time in a write's ETag (100 ns, Azure's format) bounds the offset by the round trip alone."""
    local = Local()
    clock = ServerClock(local=local)
    respond(clock, local)  # a Date header first: ±0.5 s
    sent = local.now
    local.now += 0.004
    clock.observe_write(etag_at(sent + 0.002 + SERVER_OFFSET), sent, local.now)
    assert clock.uncertainty <= 0.002 + 1e-6
    assert abs(clock.offset - SERVER_OFFSET) <= 0.002 + 1e-6


@pytest.mark.parametrize("etag", [None, "", '"0x8D9"', "W/\"datetime'not-a-time'\"", 'W/"1"'])
def test_opaque_etags_are_ignored(etag: str | None) -> None:
    """ETags are opaque by contract: one without a commit time leaves the estimate alone."""
    clock = ServerClock(local=lambda: 1.0, wall=lambda: 50.0)
    clock.observe_write(etag, 0.9, 1.0)
    assert not clock.synced
