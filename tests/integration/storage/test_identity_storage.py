"""The app's Table and Queue clients with a managed identity: Azurite (OAuth, HTTPS) and the real
``ManagedIdentityCredential`` fetching tokens from a local App Service identity endpoint."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.data.tables.aio import TableServiceClient

from devtools.identity import IdentityEndpoint, storage_token
from shared.settings import Settings
from shared.storage_clients import queue_service, storage_credential, table_service
from tests.fixtures.identity import CLIENT_ID, OAuthStorage

GRAPH = {"GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0", "GRAPH_AUTH_MODE": "static_token", "GRAPH_STATIC_TOKEN": "t"}


async def test_tables_and_queues_work_with_the_managed_identity(
    oauth_storage: OAuthStorage, identity_endpoint: IdentityEndpoint
) -> None:
    """Entities and messages round-trip with bearer tokens only (no key anywhere in the settings); the token
    came from the identity endpoint for Storage's resource and the user-assigned identity's client id."""
    settings = Settings.from_env({**GRAPH, **oauth_storage.settings()})
    credential = storage_credential(settings)
    assert credential is not None
    trust = {"connection_verify": str(oauth_storage.ca_file)}
    name = "id" + uuid.uuid4().hex[:12]
    async with credential, table_service(settings, credential, **trust) as tables:
        table = await tables.create_table(name)
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 7})
        assert (await table.get_entity("p", "r"))["value"] == 7
        async with queue_service(settings, credential, **trust) as queues:
            queue = queues.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message("hello")
            assert [m.content async for m in queue.receive_messages()] == ["hello"]
    assert identity_endpoint.requests, "the credential never asked the identity endpoint"
    assert {r["resource"] for r in identity_endpoint.requests} == {"https://storage.azure.com"}
    assert {r.get("client_id") for r in identity_endpoint.requests} == {CLIENT_ID}


async def test_azurite_refuses_a_token_for_another_audience(oauth_storage: OAuthStorage) -> None:
    """The OAuth check is real: a token minted for Graph's audience is refused (so the test above proves the
    identity's storage token was accepted, not that any bearer passes)."""
    token, expires_on = storage_token("https://graph.microsoft.com", CLIENT_ID)

    class WrongAudience:
        async def get_token(self, *scopes: str, **kwargs: object) -> object:
            from azure.core.credentials import AccessToken

            return AccessToken(token, expires_on)

        async def close(self) -> None:
            return None

    async with TableServiceClient(
        oauth_storage.azurite.service_uri("table"),
        credential=WrongAudience(),  # type: ignore[arg-type]
        connection_verify=str(oauth_storage.ca_file),
        retry_total=0,
    ) as tables:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as refused:
            await tables.create_table("wrongaudience")
    assert "audience" in str(refused.value).lower()


async def test_a_wrong_identity_header_fails_to_get_a_token(
    oauth_storage: OAuthStorage, identity_endpoint: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential that cannot authenticate to the identity endpoint gets no token: the storage call fails
    with the endpoint's refusal instead of silently falling back to anything else."""
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    settings = Settings.from_env({**GRAPH, **oauth_storage.settings()})
    credential = storage_credential(settings)
    assert credential is not None
    async with credential, table_service(settings, credential, connection_verify=str(oauth_storage.ca_file)) as t:
        with pytest.raises(HttpResponseError, match="X-IDENTITY-HEADER"):  # the SDK's wrapping of the 401
            await t.create_table("neverauthorized")
    assert identity_endpoint.requests == []


def test_the_minted_token_has_the_claims_azurite_checks() -> None:
    """Audience, an sts.windows.net issuer and nbf <= iat < exp (a sanity check of the test's own token)."""
    token, _ = storage_token("https://storage.azure.com", None)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == "https://storage.azure.com"
    assert claims["iss"].startswith("https://sts.windows.net/")
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
