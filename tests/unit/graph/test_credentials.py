"""Each GRAPH_AUTH_MODE builds the matching azure-identity credential (no token is requested here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from azure.identity.aio import (
    CertificateCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.graph.credentials import StaticTokenCredential, build_credential
from shared.settings import Settings

REAL = {"AzureWebJobsStorage": "x", "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"}
IDS = {"GRAPH_TENANT_ID": "contoso.onmicrosoft.com", "GRAPH_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}


def _self_signed_pem(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graph-app-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(pem)
    return path


async def test_client_secret_mode() -> None:
    """client_secret → ClientSecretCredential for the tenant and app."""
    settings = Settings.from_env({**REAL, **IDS, "GRAPH_AUTH_MODE": "client_secret", "GRAPH_CLIENT_SECRET": "s"})
    credential = build_credential(settings)
    assert isinstance(credential, ClientSecretCredential)
    await credential.close()


async def test_certificate_mode(tmp_path: Path) -> None:
    """certificate → CertificateCredential reading the configured PEM."""
    pem = _self_signed_pem(tmp_path / "app.pem")
    settings = Settings.from_env({**REAL, **IDS, "GRAPH_AUTH_MODE": "certificate", "GRAPH_CERTIFICATE_PATH": str(pem)})
    credential = build_credential(settings)
    assert isinstance(credential, CertificateCredential)
    await credential.close()


@pytest.mark.parametrize("client_id", [None, "abc-1"])
async def test_managed_identity_mode(client_id: str | None) -> None:
    """managed_identity → the app's ManagedIdentityCredential (system-assigned, or user-assigned by client id),
    never DefaultAzureCredential's chain of developer credentials."""
    env = {**REAL, "GRAPH_AUTH_MODE": "managed_identity"}
    if client_id:
        env["GRAPH_CLIENT_ID"] = client_id
    credential = build_credential(Settings.from_env(env))
    assert isinstance(credential, ManagedIdentityCredential)
    await credential.close()


async def test_static_token_mode_returns_the_token() -> None:
    """static_token (simulator only) hands out the configured token."""
    env = {"AzureWebJobsStorage": "x", "GRAPH_BASE_URL": "http://127.0.0.1:1/v1.0"}
    settings = Settings.from_env({**env, "GRAPH_AUTH_MODE": "static_token", "GRAPH_STATIC_TOKEN": "tok"})
    credential = build_credential(settings)
    assert isinstance(credential, StaticTokenCredential)
    assert (await credential.get_token("scope")).token == "tok"
