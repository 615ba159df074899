"""Rules between settings that each passed alone (``Settings.from_env`` adds their problems to the reader's).

Kept apart from the declarations so ``shared/settings.py`` stays one table; each rule says what to set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.setting_specs import is_loopback_url

if TYPE_CHECKING:
    from shared.settings import Settings


def cross_field_problems(s: Settings) -> list[str]:
    """Rules between settings that each passed alone."""
    problems = _storage_problems(s)
    if s.graph_subscriptions and s.webhook_base_url is None:
        problems.append("GRAPH_SUBSCRIPTIONS: needs WEBHOOK_BASE_URL (where Graph should post notifications)")
    if s.cache_max_stale_seconds < 4 * max(s.cache_user_ttl_seconds, s.cache_messages_ttl_seconds):
        problems.append("CACHE_MAX_STALE_SECONDS: expected at least 4x the largest CACHE_*_TTL_SECONDS")
    if s.mirror_max_staleness_seconds <= s.mirror_safety_interval_seconds:
        problems.append("MIRROR_MAX_STALENESS_SECONDS: expected more than MIRROR_SAFETY_INTERVAL_SECONDS")
    if s.breaker_max_open_seconds < s.breaker_open_seconds:
        problems.append("BREAKER_MAX_OPEN_SECONDS: expected at least BREAKER_OPEN_SECONDS")
    mode, ids = s.graph_auth_mode, s.graph_tenant_id and s.graph_client_id
    if mode == "client_secret" and not (ids and s.graph_client_secret):
        problems.append("GRAPH_AUTH_MODE=client_secret: needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET")
    if mode == "certificate" and not (ids and s.graph_certificate_path):
        problems.append("GRAPH_AUTH_MODE=certificate: needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CERTIFICATE_PATH")
    if mode == "static_token" and s.graph_static_token is None:
        problems.append("GRAPH_AUTH_MODE=static_token: needs GRAPH_STATIC_TOKEN")
    if mode == "static_token" and not is_loopback_url(s.graph_base_url):
        problems.append("GRAPH_AUTH_MODE=static_token: allowed only with a loopback GRAPH_BASE_URL (simulator)")
    return problems + _rich_problems(s) + _real_tenant_problems(s)


def _rich_problems(s: Settings) -> list[str]:
    """Rich notifications need a key to decrypt with and an audience to check tokens against."""
    problems = []
    if s.rich_notifications and not (s.rich_certificate and s.rich_certificate_id):
        problems.append(
            "RICH_NOTIFICATIONS: needs RICH_NOTIFICATIONS_CERTIFICATE and RICH_NOTIFICATIONS_CERTIFICATE_ID"
        )
    if s.rich_notifications and not (s.rich_audience or s.graph_client_id):
        problems.append("RICH_NOTIFICATIONS: needs RICH_NOTIFICATIONS_AUDIENCE or GRAPH_CLIENT_ID (our app id)")
    if (s.rich_previous_certificate is None) != (s.rich_previous_certificate_id is None):
        problems.append(
            "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE: set it together with RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE_ID"
        )
    return problems


def _real_tenant_problems(s: Settings) -> list[str]:
    """Real credentials with the simulator's loopback URLs would ask Entra for a token scoped to 127.0.0.1 and
    subscribe Graph to an address it cannot reach: refused, saying what to set."""
    if s.graph_auth_mode == "static_token":
        return []
    problems = []
    if is_loopback_url(s.graph_base_url):
        problems.append(
            f"GRAPH_BASE_URL: {s.graph_base_url} is loopback (the Graph simulator) but GRAPH_AUTH_MODE="
            f"{s.graph_auth_mode} gets real tokens: set GRAPH_BASE_URL=https://graph.microsoft.com/v1.0 (or your "
            "national cloud's Graph), or GRAPH_AUTH_MODE=static_token for the simulator"
        )
    if s.webhook_base_url is not None and is_loopback_url(s.webhook_base_url):
        problems.append(
            f"WEBHOOK_BASE_URL: {s.webhook_base_url} is loopback, which Graph cannot reach: set the app's public "
            "https URL, e.g. https://<app>.azurewebsites.net/api (or a tunnel's), or leave it unset"
        )
    return problems


def _storage_problems(s: Settings) -> list[str]:
    """A connection string, or the host's identity shapes, never both (which one the host uses is unclear)."""
    endpoints = (s.storage_blob_service_uri, s.storage_queue_service_uri, s.storage_table_service_uri)
    identity = (s.storage_account_name, *endpoints, s.storage_credential, s.storage_client_id)
    if s.storage_connection_string is not None:
        if any(value is not None for value in identity):
            return ["AzureWebJobsStorage: set a connection string or the AzureWebJobsStorage__* settings, not both"]
        return []
    if s.storage_account_name is None and not all(endpoints):
        if not any(value is not None for value in identity):
            return [
                "AzureWebJobsStorage: required (a Storage connection string), or AzureWebJobsStorage__accountName "
                "for a managed identity"
            ]
        return [
            "AzureWebJobsStorage__accountName: required for identity-based storage, or all of "
            "AzureWebJobsStorage__blobServiceUri, __queueServiceUri and __tableServiceUri"
        ]
    return []
