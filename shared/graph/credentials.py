"""Credentials for Graph per ``GRAPH_AUTH_MODE`` (azure-identity's async credentials, or a fixed token)."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from shared.errors import ConfigurationError
from shared.settings import Settings


class StaticTokenCredential(AsyncTokenCredential):
    """Returns one fixed bearer token: only for the local Graph simulator (settings refuse it elsewhere)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: object) -> None:
        return None


def build_credential(settings: Settings) -> AsyncTokenCredential:
    """The credential for the configured mode; imports only the azure-identity class it needs."""
    mode = settings.graph_auth_mode
    if mode == "static_token" and settings.graph_static_token is not None:
        return StaticTokenCredential(settings.graph_static_token.reveal())
    if mode == "client_secret" and settings.graph_client_secret is not None:
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(
            str(settings.graph_tenant_id), str(settings.graph_client_id), settings.graph_client_secret.reveal()
        )
    if mode == "certificate":
        from azure.identity.aio import CertificateCredential

        password = settings.graph_certificate_password
        return CertificateCredential(
            str(settings.graph_tenant_id),
            str(settings.graph_client_id),
            certificate_path=settings.graph_certificate_path,
            password=password.reveal() if password else None,
        )
    if mode == "managed_identity":
        from azure.identity.aio import ManagedIdentityCredential

        # The app's own identity only (system-assigned, or user-assigned by client id): no fallback to
        # environment or developer credentials, so production never picks up an unexpected identity.
        if settings.graph_client_id:
            return ManagedIdentityCredential(client_id=settings.graph_client_id)
        return ManagedIdentityCredential()
    raise ConfigurationError(f"GRAPH_AUTH_MODE={mode}: its credential settings are missing")
