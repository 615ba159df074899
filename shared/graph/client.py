"""One ``GraphServiceClient`` per process, built from settings.

Retries are owned by our tenacity policy (``shared/resilience/retry.py``), which sees every attempt, honours
the per-call time budget and feeds the circuit breaker; the SDK's own RetryHandler is therefore switched off
(``max_retries=0``) so attempts do not multiply (SDK x tenacity x queue redelivery). The redirect and other
default middleware stay. Timeouts: connect ≤ 5 s, the whole request ``GRAPH_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from shared.graph.http_spans import TracedTransport
from shared.settings import Settings

MAX_CONNECTIONS = 100


def tls_context() -> ssl.SSLContext:
    """The verifying TLS context aiohttp (the Storage clients' transport) made at import, with the system's CA
    certificates: reusing it spares the cold path a second context and certificate load (~35-50 ms of CPU),
    which httpx would otherwise make for its own transport. A fresh default context if aiohttp has none."""
    from aiohttp import connector

    shared = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
    return shared if isinstance(shared, ssl.SSLContext) else ssl.create_default_context()


def build_http_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The httpx client with Graph's default middleware, the SDK retry disabled, deliberate timeouts.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``); the middleware still runs, and
    every request that reaches the transport gets its HTTP client span (``TracedTransport``).
    """
    timeout = httpx.Timeout(settings.graph_timeout_seconds, connect=min(5.0, settings.graph_timeout_seconds))
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20)
    # A client's limits apply to its own transport only.
    network = transport or httpx.AsyncHTTPTransport(verify=tls_context(), limits=limits)
    client = httpx.AsyncClient(base_url=settings.graph_base_url, timeout=timeout, transport=TracedTransport(network))
    options = {RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0, should_retry=False)}
    configured: httpx.AsyncClient = GraphClientFactory.create_with_default_middleware(client=client, options=options)
    return configured


def build_graph_client(
    settings: Settings, credential: AsyncTokenCredential, http_client: httpx.AsyncClient | None = None
) -> GraphServiceClient:
    """A client whose adapter targets ``GRAPH_BASE_URL`` (the simulator, Graph, or a national cloud)."""
    host = urlsplit(settings.graph_base_url).hostname or ""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[settings.graph_scope], allowed_hosts=[host])
    adapter = GraphRequestAdapter(auth, client=http_client or build_http_client(settings))
    adapter.base_url = settings.graph_base_url
    return GraphServiceClient(request_adapter=adapter)
