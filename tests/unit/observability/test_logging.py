"""Structured logs: JSON lines with invocation id and operation, also under a host that installed a handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.telemetry import configure_logging, get_logger, invocation_scope


@pytest.fixture(name="console")
def _console() -> Iterator[io.StringIO]:
    """A plain console handler on the root logger, as the local harness installs one before the app runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        yield stream
    finally:
        root.handlers = saved


def test_json_format_applies_to_a_console_handler_installed_before_the_app(console: io.StringIO) -> None:
    """LOG_FORMAT=json turns the existing console handler's lines into JSON with invocation id and operation,
    and redaction still applies."""
    configure_logging("INFO", "json")
    with invocation_scope("inv-42", "get_user"):
        get_logger("test").info("calling Graph with Bearer abc.def.ghi")
    (line,) = console.getvalue().splitlines()
    record = json.loads(line)
    assert (record["invocation_id"], record["operation"], record["level"]) == ("inv-42", "get_user", "INFO")
    assert record["message"] == "calling Graph with Bearer ***"
