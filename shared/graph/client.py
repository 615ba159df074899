"""One ``GraphServiceClient`` per process, built from settings.

Retries are owned by our tenacity policy (``shared/resilience/retry.py``), which sees every attempt, honours
the per-call time budget and feeds the circuit breaker; the SDK's own RetryHandler is therefore switched off
(``max_retries=0``) so attempts do not multiply (SDK x tenacity x queue redelivery). The redirect and other
default middleware stay. Timeouts: connect ≤ 5 s, the whole request ``GRAPH_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from shared.settings import Settings

MAX_CONNECTIONS = 100


def build_http_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The httpx client with Graph's default middleware, the SDK retry disabled, deliberate timeouts.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``); the middleware still runs.
    """
    timeout = httpx.Timeout(settings.graph_timeout_seconds, connect=min(5.0, settings.graph_timeout_seconds))
    client = httpx.AsyncClient(
        base_url=settings.graph_base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20),
        transport=transport,
    )
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
