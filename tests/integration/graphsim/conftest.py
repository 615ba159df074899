"""Fixtures local to the simulator's own tests."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.graphsim.client import SimControl


@pytest.fixture(name="user")
def _user(graphsim: SimControl) -> dict[str, Any]:
    """The first seeded user (every property)."""
    return graphsim.users()[0]
