"""The ops CLI's ``grant-graph-roles``: a Graph client with the operator's token, then
``shared.graph.permissions``.

It runs outside the app and needs no Storage. Against a loopback Graph (the simulator) it sends
``GRAPH_STATIC_TOKEN``; against real Graph it uses the operator's Azure CLI sign-in (``az login``), because
granting app roles takes an administrator's rights, never the app's own identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import ConfigurationError
from shared.graph.credentials import StaticTokenCredential
from shared.graph.permissions import DEFAULT_ROLES, GrantError, grant_app_roles
from shared.setting_specs import http_url, is_loopback_url

PUBLIC_GRAPH = "https://graph.microsoft.com/v1.0"
TIMEOUT_S = 30.0


def _credential(base_url: str, env: Mapping[str, str]) -> AsyncTokenCredential:
    if is_loopback_url(base_url):
        token = env.get("GRAPH_STATIC_TOKEN", "").strip()
        if not token:
            raise ConfigurationError("GRAPH_STATIC_TOKEN: required to call the Graph simulator at " + base_url)
        return StaticTokenCredential(token)
    from azure.identity.aio import AzureCliCredential

    return AzureCliCredential()


async def grant_graph_roles(
    identity: str, roles: Sequence[str] | None, graph_url: str | None, env: Mapping[str, str]
) -> dict[str, Any]:
    """Grant ``roles`` (default: what the app needs) to ``identity``; the JSON result for the CLI."""
    raw = graph_url or env.get("GRAPH_BASE_URL", "").strip() or PUBLIC_GRAPH
    try:
        base_url = str(http_url(raw)).rstrip("/")
    except ValueError as error:
        raise ConfigurationError(f"--graph-url: expected {error}, got {raw[:80]!r}") from None
    parts = urlsplit(base_url)
    credential = _credential(base_url, env)
    try:
        token = await credential.get_token(f"{parts.scheme}://{parts.netloc}/.default")
    except ClientAuthenticationError as error:  # CredentialUnavailableError included: not signed in
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise GrantError(f"no token for {base_url} (sign in with `az login` as an admin): {first_line}") from None
    finally:
        await credential.close()
    headers = {"Authorization": f"Bearer {token.token}"}
    async with httpx.AsyncClient(base_url=base_url + "/", headers=headers, timeout=TIMEOUT_S) as client:
        result = await grant_app_roles(client, identity, list(roles or DEFAULT_ROLES))
    return {"graph": base_url, **result.to_dict()}
