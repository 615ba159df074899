"""Unit-test fixtures for observability: in-memory OpenTelemetry providers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.observability.otel import Recorded, recording


@pytest.fixture(name="otel")
def _otel() -> Iterator[Recorded]:
    """The app's instruments bound to SDK providers with in-memory readers for this test."""
    yield from recording()
