"""Stopping the child processes the dev tools, tests and benchmarks start (harness, simulator)."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; the exit code (negative if killed by a signal)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode
