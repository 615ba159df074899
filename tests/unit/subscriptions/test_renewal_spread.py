"""Renewals of subscriptions created together spread over half the renewal window."""

from __future__ import annotations

from collections import Counter

from shared.subscriptions.steps import renewal_spread


def test_a_fleet_created_in_one_run_is_renewed_over_many_runs() -> None:
    """2,000 mailboxes: with a 2-day window shortened by up to half and a 30-minute timer, the first renewals
    fall into the 48 runs of one day; the busiest run takes under 4% of them (uniform would be ~2%)."""
    spreads = [renewal_spread(f"users/{n:08x}-0000-4000-8000-000000000000/messages") for n in range(2_000)]
    assert all(0 <= s < 1 for s in spreads)
    runs = Counter(int(s * 48) for s in spreads)  # the run (of 48 in the day) in which each becomes due
    assert len(runs) == 48
    assert max(runs.values()) < 0.04 * 2_000


def test_the_place_is_stable_per_resource() -> None:
    assert renewal_spread("users/a/messages") == renewal_spread("users/a/messages")
    assert renewal_spread("users/a/messages") != renewal_spread("users/b/messages")
