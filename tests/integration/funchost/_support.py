"""Helpers shared by the harness tests: the sample app's location and its invocation records."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
YEARLY = "0 0 0 1 1 *"
T = TypeVar("T")


def records(directory: Path, function: str) -> list[dict[str, Any]]:
    """The JSON lines the sample app wrote for ``function`` so far."""
    path = directory / f"{function}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until ``predicate()`` is truthy and return it; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def b64(text: str) -> str:
    """Queue message text as the host's default messageEncoding (base64) expects it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def wait_for_records(
    directory: Path, function: str, count: int, *, timeout: float = 10.0, **match: Any
) -> list[dict[str, Any]]:
    """Wait until ``function`` has at least ``count`` records whose fields equal ``match``; return them."""

    def matching() -> list[dict[str, Any]]:
        return [r for r in records(directory, function) if all(r.get(k) == v for k, v in match.items())]

    wait_for(lambda: len(matching()) >= count, timeout=timeout, what=f"{count} {function} records {match}")
    return matching()
