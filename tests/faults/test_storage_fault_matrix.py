"""Issue 11: the app across storage outages. Azurite (test-private) is stopped with SIGTERM before,
during or after notification processing, for 5 s and 30 s, under a cold and a warm instance, while the
webhook, the users API, /api/health, the queue processor and the timers are all exercised.

The guarantee proven per cell (for outages up to 60 s): never a 500; the webhook answers only 202 or 503
(503 with Retry-After); no acknowledged item lost; no duplicate in graph-events; every acknowledged item in
graph-events within outage + 30 s; users API 200 from Graph during the outage (fail_open) or 503 with
Retry-After for uncached users (fail_closed); /api/health 503 during the outage and 200 after; the host
stays up and the next timer run after recovery succeeds. See docs/reliability.md.
"""

from __future__ import annotations

import pytest

from tests.faults.matrix import Cell, CellResult, FaultStack, matrix

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("cell", matrix(), ids=lambda cell: cell.name)
def test_storage_outage_cell(cell: Cell, fault_stack: FaultStack, record_result: list[CellResult]) -> None:
    """One cell of the matrix: every guarantee the cell broke is listed in the failure message."""
    result = fault_stack.run(cell)
    record_result.append(result)
    assert not result.violations, f"{cell.name}:\n  " + "\n  ".join(result.violations)
