"""Timer triggers through the harness subprocess: schedule, run_on_startup, past_due, no overlap, admin."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devtools.azurite import Azurite
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.integration.funchost._support import SAMPLE_APP, YEARLY, records, wait_for, wait_for_records

pytestmark = pytest.mark.integration


def _start(
    factory: FuncHostLauncher, azurite: Azurite, records_dir: Path, schedule: str, **extra: str
) -> FuncHostProcess:
    azurite.start()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_QUEUE": "funchost-timers-unused",
        "TICK_SCHEDULE": schedule,
        "SAMPLE_RECORD_DIR": str(records_dir),
        **extra,
    }
    return factory(SAMPLE_APP, env)


def test_timer_fires_on_its_six_field_schedule(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """'*/1 * * * * *' (seconds first) fires about once a second, on time (past_due False)."""
    _start(funchost_factory, azurite, tmp_path, "*/1 * * * * *")
    starts = wait_for_records(tmp_path, "tick", 3, phase="start")
    gaps = [b["started"] - a["started"] for a, b in itertools.pairwise(starts)]
    assert all(0.5 < gap < 1.5 for gap in gaps[:2]), gaps
    assert not any(r["past_due"] for r in starts)


def test_run_on_startup_runs_once_at_start(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """A yearly timer with run_on_startup runs right after start with a real TimerRequest (not past due)."""
    _start(funchost_factory, azurite, tmp_path, YEARLY)
    (run,) = wait_for(lambda: records(tmp_path, "yearly"), what="the startup run")
    assert run["past_due"] is False
    assert run["timer_type"] == "azure.functions.timer.TimerRequest"
    assert set(run["schedule_status"]) == {"Last", "Next", "LastUpdated"}
    assert run["schedule_status"]["Next"].startswith(f"{datetime.now(UTC).year + 1}-01-01T00:00:00")
    assert not records(tmp_path, "tick")


def test_overrunning_timer_runs_late_with_past_due_and_never_overlaps(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """Every second, each run taking 2.2 s: the occurrence that came during a run waits for it and then runs
    with past_due=True; runs never overlap and the missed occurrences are not stacked up."""
    _start(funchost_factory, azurite, tmp_path, "* * * * * *", TICK_SLEEP="2.2")
    ends = wait_for_records(tmp_path, "tick", 3, timeout=15, phase="end")
    assert ends[0]["past_due"] is False
    assert all(r["past_due"] for r in ends[1:3])
    spans = sorted((r["started"], r["ended"]) for r in ends)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    # Back to back, not stacked: each late run starts as soon as the previous one ends.
    assert all(later[0] - earlier[1] < 1.0 for earlier, later in itertools.pairwise(spans)), spans


def test_admin_api_fires_a_timer(funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path) -> None:
    """POST /admin/functions/<timer> with the master key answers 202 and runs the timer once more."""
    harness = _start(funchost_factory, azurite, tmp_path, YEARLY)
    wait_for(lambda: records(tmp_path, "yearly"), what="the startup run")
    response = httpx.post(
        f"{harness.base_url}/admin/functions/yearly",
        json={"input": ""},
        headers={"x-functions-key": harness.master_key},
    )
    assert response.status_code == 202
    runs = wait_for_records(tmp_path, "yearly", 2)
    assert runs[1]["past_due"] is False
    assert runs[0]["invocation_id"] != runs[1]["invocation_id"]


def test_occurrence_missed_while_down_runs_past_due_at_start(
    funchost_factory: FuncHostLauncher, azurite: Azurite, tmp_path: Path
) -> None:
    """With FUNCHOST_STATE_DIR, a schedule status whose Next has passed (the harness was down) makes the timer
    run once at start with past_due=True, then the status is updated."""
    state = tmp_path / "state"
    (state / "timers").mkdir(parents=True)
    missed = datetime.now(UTC) - timedelta(hours=1)
    status = {"Last": (missed - timedelta(days=365)).isoformat(), "Next": missed.isoformat()}
    (state / "timers" / "tick.json").write_text(json.dumps({**status, "LastUpdated": status["Last"]}))
    _start(funchost_factory, azurite, tmp_path, YEARLY, FUNCHOST_STATE_DIR=str(state))
    (run,) = wait_for(lambda: [r for r in records(tmp_path, "tick") if r["phase"] == "end"], what="the catch-up")
    assert run["past_due"] is True

    def saved_after_the_run() -> dict[str, str]:
        # The status is written after the function returns, so just after its last record it may be old.
        current: dict[str, str] = json.loads((state / "timers" / "tick.json").read_text())
        return current if datetime.fromisoformat(current["Last"]) == missed else {}

    saved = wait_for(saved_after_the_run, what="the schedule status written after the run")
    assert datetime.fromisoformat(saved["Next"]) > datetime.now(UTC)
