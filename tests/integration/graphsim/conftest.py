"""Fixtures local to the simulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.graphsim.client import SimControl
from tests.integration.graphsim.receiver import Receiver


@pytest.fixture(name="receiver")
def _receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port that answers the handshake correctly."""
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(name="user")
def _user(graphsim: SimControl) -> dict[str, Any]:
    """The first seeded user (every property)."""
    return graphsim.users()[0]
