"""What the cache reports to whoever watches it, so the generic package needs no metrics module.

The wiring attaches a listener (the app's is ``shared.metrics.CacheMetrics``); without one the cache
reports to ``SilentListener``. Listener methods run on the hot path (an L1 hit calls ``answered``):
they must be cheap and must not raise.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any, Protocol

# What one ``get_or_set`` call ended as: its source, or "negative-hit" (a cached NotFoundError) or "failure".
# "bypass" is reported too: a listener that does not count it ignores it.
CacheAnswer = str


class CacheListener(Protocol):
    """Events of one cache: each call's answer, and a context around each load (e.g. a tracing span)."""

    def answered(self, result: CacheAnswer) -> None:
        """One ``get_or_set`` call ended: hit-l1, hit-l2, stale, miss, bypass, negative-hit or failure."""

    def loading(self, namespace: str) -> AbstractContextManager[Any]:
        """Entered around the load of a value missing from L1 (one per single-flight caller)."""


_NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()


class SilentListener:
    """Listens to nothing: the default, so a cache built without wiring (tests, tools) still works."""

    def answered(self, result: CacheAnswer) -> None:
        return None

    def loading(self, namespace: str) -> AbstractContextManager[Any]:
        return _NOTHING
