"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.graphsim.receiver import Receiver


@pytest.fixture(name="receiver")
def _receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port, on its own thread: it answers the simulator's validation
    handshake correctly and keeps the notifications it is sent."""
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
