"""Spans for Table and Queue calls: database spans for tables, messaging spans for queue message operations
(names and attributes from ``semconv``). ``shared/storage.py`` calls ``storage_span`` around each awaited
client call once the composition root passed it to ``storage.trace_calls``.

Listings (query entities, receive pages) are iterated by the caller and are not wrapped; the Azure SDK's own
HTTP spans cover each page request.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any

from shared.metrics import semconv
from shared.metrics.otel import traced, tracing

_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()


def storage_span(method: str, client: Any) -> AbstractContextManager[Any]:
    """The span of one call of ``client.method``; a no-op when tracing is off or the call is not an operation
    the conventions describe (creating a queue, reading its properties)."""
    if not tracing():
        return _NO_SPAN
    url = str(getattr(client, "url", ""))
    table = getattr(client, "table_name", None)
    if isinstance(table, str):
        return traced(*semconv.table_call(method, table, str(getattr(client, "account_name", "")), url))
    queue = getattr(client, "queue_name", None)
    if isinstance(queue, str):
        call = semconv.queue_call(method, queue, url)
        if call is not None:
            return traced(*call)
    return _NO_SPAN
