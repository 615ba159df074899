"""An HTTP client span for every request the Graph client sends (the conventions' attributes, no secrets).

It sits under the SDK's middleware, at the transport, so each real request is one span: a retry or a
redirect is its own span, a request answered from nothing (a transport error) is one with ``error.type``.
The Authorization header is never read; ``url.full`` drops user info and token-like query values
(``$skiptoken``, ``$deltatoken``), see ``shared/metrics/semconv.py``.
"""

from __future__ import annotations

import httpx

from shared import metrics
from shared.metrics import semconv


class TracedTransport(httpx.AsyncBaseTransport):
    """Wraps the transport that reaches the network; spans only while tracing is installed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not metrics.tracing():
            return await self._inner.handle_async_request(request)
        name, attributes = semconv.http_client(request.method, str(request.url))
        with metrics.traced(name, "client", attributes) as span:
            response = await self._inner.handle_async_request(request)
            span.set("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.fail(str(response.status_code))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()
