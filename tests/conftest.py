"""Test configuration: each real component the suite starts lives in its own fixture module."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.graphsim",
    "tests.fixtures.funchost",
    "tests.fixtures.app",
]
