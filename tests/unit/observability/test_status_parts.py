"""Pieces of the status document, the dashboard page and the ops CLI that need no Storage."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from shared import metrics
from shared.dashboard import HEADERS, page
from shared.graph import gateway
from shared.names import GRAPH_BREAKERS
from shared.ops import load_settings_file, parser
from shared.status import process_section
from tests.unit.ordering import settle, until


def test_known_breakers_are_the_gateways_keys() -> None:
    """The status page lists exactly the breakers the Graph gateway uses."""
    assert set(GRAPH_BREAKERS) == {gateway.DIRECTORY, gateway.MAIL, gateway.SUBSCRIPTIONS}


def test_process_section_reports_graph_outcomes_and_throttling() -> None:
    """Recorded Graph attempts show up as outcome counts, the 429 count and its per-bucket series."""
    metrics.record_graph_attempt("graph-directory", "429", 0.02)
    metrics.record_graph_retry("graph-directory", "429")
    section = process_section(None)
    assert section["cache"] is None  # this registry never built a cache
    assert section["graph"]["throttled"] == 1
    assert section["graph"]["outcomes"]["429"] == section["graph"]["throttled"]
    assert sum(section["graph"]["throttled_series"]) == section["graph"]["throttled"]
    assert section["graph"]["retries"] == 1
    assert section["stats"]["distributions"]["graph.call.ms"]["count"] == 1


def test_dashboard_is_one_self_contained_page() -> None:
    """No external scripts, styles, images or fonts: everything is inline, only /api/status is fetched."""
    html = page()
    assert not re.search(r"""(?:src|href)\s*=""", html, re.IGNORECASE)
    assert re.findall(r"https?://[^\s\"']+", html) == ["http://www.w3.org/2000/svg"]  # the SVG namespace
    for table in ("breakers", "subscriptions", "queues", "stats"):
        assert f'<table id="{table}"' in html
    assert 'new URL("status", window.location.href)' in html
    assert "innerHTML" not in html  # data is only ever set as text


def test_dashboard_headers_keep_the_keyed_url_private() -> None:
    """The page carries the admin key in its URL: no referrer, no caching, no framing, inline code only."""
    assert HEADERS["Referrer-Policy"] == "no-referrer"
    assert HEADERS["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in HEADERS["Content-Security-Policy"]
    assert "connect-src 'self'" in HEADERS["Content-Security-Policy"]


def test_expiry_gauge_computes_time_to_expiry_from_its_copy() -> None:
    """Observations are seconds until each expiration, computed at observation time."""
    now = [1000.0]
    gauge = metrics.ExpiryGauge(refresh_seconds=60, clock=lambda: now[0])
    gauge.update([metrics.Expiry("s1", "users", 4600.0)])
    now[0] = 1600.0
    assert gauge.observe() == [(3000.0, {"subscription": "s1", "resource": "users"})]


async def test_expiry_gauge_rereads_the_registry_at_most_every_refresh_interval() -> None:
    """A stale copy schedules one registry read on the app's loop; a fresh one schedules none."""
    now = [0.0]
    reads: list[float] = []

    async def load() -> list[metrics.Expiry]:
        reads.append(now[0])
        return [metrics.Expiry("s1", "users", 100.0)]

    gauge = metrics.ExpiryGauge(refresh_seconds=60, clock=lambda: now[0])
    gauge.watch(load, asyncio.get_running_loop())
    # ``load`` never suspends, so the copy is updated in the same step that records the read.
    gauge.observe()  # never loaded: schedules a read
    await until(lambda: len(reads) == 1, "the first registry read")
    now[0] = 30.0
    assert gauge.observe() == [(70.0, {"subscription": "s1", "resource": "users"})]
    await settle()  # a read wrongly scheduled at 30 s would run here and record 30.0
    now[0] = 61.0
    gauge.observe()
    await until(lambda: len(reads) == 2, "the read after the refresh interval")
    await settle()
    assert reads == [0.0, 61.0]


def test_settings_file_fills_only_what_the_environment_lacks(tmp_path: Path) -> None:
    """The CLI reads local.settings.json's Values, but an environment variable always wins."""
    settings = tmp_path / "local.settings.json"
    settings.write_text('{"Values": {"LOG_LEVEL": "DEBUG", "STORAGE_TABLE_PREFIX": "fromfile"}}')
    merged = load_settings_file(settings, {"LOG_LEVEL": "INFO"})
    assert merged["LOG_LEVEL"] == "INFO"
    assert merged["STORAGE_TABLE_PREFIX"] == "fromfile"
    assert load_settings_file(tmp_path / "missing.json", {"A": "1"}) == {"A": "1"}


@pytest.mark.parametrize(
    "argv",
    [["cache", "invalidate"], ["cache", "invalidate", "--group", "g", "--key", "users", "k"], ["breaker", "open", "x"]],
)
def test_cli_rejects_incomplete_or_unknown_commands(argv: list[str]) -> None:
    """cache invalidate needs exactly one of --key/--group; breaker actions are isolate or reset."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
