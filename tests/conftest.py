"""Test configuration: each real component the suite starts lives in its own fixture module."""

import pytest

from shared import metrics

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.graphsim",
    "tests.fixtures.funchost",
    "tests.fixtures.app",
    "tests.fixtures.identity",
]


@pytest.fixture(autouse=True)
def _fresh_metrics() -> None:
    """Every test starts with no measurements and no OpenTelemetry installed: a count a test asserts
    is the count that test caused, never another test's leftovers."""
    metrics.reset()
