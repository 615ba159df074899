"""Polling for a condition in tests that watch another process (the harness, the run command)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3) -> Any:
    """``condition()``'s first truthy value, or its last value once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
