"""The app's Table and Queue service clients, built from the storage settings the Functions host reads.

Two shapes, as the host accepts them for ``AzureWebJobsStorage``: a connection string (local runs, Azurite),
or identity-based settings (``AzureWebJobsStorage__accountName`` or ``__tableServiceUri``/``__queueServiceUri``,
with ``__clientId`` naming a user-assigned identity). Azure's own templates disable shared keys, so on Azure
the clients authenticate with the app's managed identity, the same one the host uses for its triggers.
SDKs are imported inside the functions so ``import function_app`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

# Storage clients retry briefly: a caller waiting on a dead Storage account should learn it in seconds,
# and the layers above (queue redelivery, Graph's own retries) own the longer waits.
STORAGE_CLIENT_OPTIONS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 10}
TABLE_RETRY: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.1, "retry_backoff_max": 2}
# These four shape the queue client's own (async) ExponentialRetry policy.
QUEUE_RETRY: dict[str, Any] = {"initial_backoff": 0, "increment_base": 1, "retry_total": 2, "random_jitter_range": 0}


# The variables through which aiohttp (the clients' transport) would find a proxy.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def proxy_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Read proxy settings per request only where a proxy is configured.

    With the SDK's default (``use_env_settings``), aiohttp looks for proxies and parses ``~/.netrc`` on every
    request, in a worker thread: about a tenth of the webhook's and processor's CPU under load, measured
    with py-spy (docs/benchmarks.md). A Functions app rarely sits behind a proxy; one that does sets one of
    these variables and keeps the SDK's behaviour."""
    return {"use_env_settings": any(env.get(name) for name in PROXY_VARIABLES)}


def service_url(settings: Settings, service: str) -> str:
    """The ``table``/``queue`` endpoint of identity-based storage: the explicit URI, else the account's."""
    explicit = settings.storage_table_service_uri if service == "table" else settings.storage_queue_service_uri
    if explicit is not None:
        return explicit
    if settings.storage_account_name is None:  # Settings' validation rules this out
        raise ValueError(f"no {service} endpoint: set AzureWebJobsStorage__accountName or __{service}ServiceUri")
    return f"https://{settings.storage_account_name}.{service}.core.windows.net"


def storage_credential(settings: Settings) -> AsyncTokenCredential | None:
    """The managed identity that reaches storage, or None when a connection string carries the key.

    ``ManagedIdentityCredential`` is what the host uses for ``__credential=managedidentity``; without a
    ``__clientId`` it is the system-assigned identity.
    """
    if not settings.storage_identity:
        return None
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.storage_client_id)


def table_service(settings: Settings, credential: AsyncTokenCredential | None, **extra: Any) -> TableServiceClient:
    """The Table service client: by connection string, or by endpoint with the managed identity.

    ``extra`` adds client options (tests pass ``connection_verify`` to trust a local certificate)."""
    from azure.data.tables.aio import TableServiceClient

    options = {**TABLE_RETRY, **STORAGE_CLIENT_OPTIONS, **extra}
    if settings.storage_connection_string is not None:
        return TableServiceClient.from_connection_string(settings.storage_connection_string.reveal(), **options)
    return TableServiceClient(service_url(settings, "table"), credential=credential, **options)


def queue_service(settings: Settings, credential: AsyncTokenCredential | None, **extra: Any) -> QueueServiceClient:
    """The Queue service client: by connection string, or by endpoint with the managed identity.

    Message encoding (base64, as queue triggers expect) is set per queue client, in shared/storage.py.
    """
    from azure.storage.queue.aio import QueueServiceClient

    options = {**QUEUE_RETRY, **STORAGE_CLIENT_OPTIONS, **extra}
    if settings.storage_connection_string is not None:
        return QueueServiceClient.from_connection_string(settings.storage_connection_string.reveal(), **options)
    return QueueServiceClient(service_url(settings, "queue"), credential=credential, **options)
