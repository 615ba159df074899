"""The sweep timer's logic: every sweeper runs even when another fails; the failure is raised afterwards."""

from __future__ import annotations

import pytest

from shared.maintenance import run_sweep


async def test_every_sweeper_runs_and_a_failure_is_raised_afterwards(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def cache() -> int:
        ran.append("cache")
        return 3

    async def dedupe() -> int:
        ran.append("dedupe")
        raise RuntimeError("storage went away")

    async def tombstones() -> int:
        ran.append("tombstones")
        return 1

    with caplog.at_level("INFO"), pytest.raises(RuntimeError, match="storage went away"):
        await run_sweep({"expired cache rows": cache, "dedupe markers": dedupe, "mirror tombstones": tombstones})

    assert ran == ["cache", "dedupe", "tombstones"]
    assert "3 expired cache rows" in caplog.text
    assert "1 mirror tombstones" in caplog.text
