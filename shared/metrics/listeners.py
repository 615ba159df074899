"""Adapters from the generic packages' listener events to the record functions.

``shared.cache`` knows nothing of metrics: it reports events to a ``CacheListener``; the wiring attaches
``CacheMetrics`` so those events become the ``cache.requests`` counts and ``cache.load`` spans.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from shared.metrics.otel import span
from shared.metrics.record import record_cache


class CacheMetrics:
    """A ``shared.cache.CacheListener`` that records what the cache reports (structural: no import of it)."""

    def answered(self, result: str) -> None:
        record_cache(result)

    def loading(self, namespace: str) -> AbstractContextManager[Any]:
        return span("cache.load", {"cache.namespace": namespace})
