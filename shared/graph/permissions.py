"""Grant Microsoft Graph application permissions (app roles) to a service principal, e.g. the app's
managed identity, which the Entra portal cannot do (docs/deploy.md).

Finds Microsoft Graph's service principal and its app roles by value, finds the identity's service
principal by client id (appId) or object id, and posts one ``appRoleAssignment`` per role it does not hold
yet, so running it twice changes nothing. Talks plain REST through the ``httpx.AsyncClient`` it is given
(base URL = the Graph endpoint incl. version, bearer token already attached): the caller decides whose
token that is (the operator's, who needs AppRoleAssignment.ReadWrite.All and Application.Read.All).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from shared.errors import AppError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# What the app as shipped needs (docs/deploy.md, "Graph permissions"): users API, user subscriptions and
# delta -> User.Read.All; mail API (returns bodyPreview), message subscriptions and delta -> Mail.Read.
DEFAULT_ROLES = ("User.Read.All", "Mail.Read")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,119}")
_MAX_PAGES = 100


class GrantError(AppError):
    """Granting failed for a reason the operator must fix (the message says which)."""

    code = "grant_failed"


class IdentityNotFound(GrantError):
    code = "identity_not_found"


@dataclass(frozen=True)
class GrantResult:
    """What a run did: roles newly assigned and roles the identity already held."""

    principal_id: str
    display_name: str
    granted: list[str]
    already_assigned: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal_id": self.principal_id,
            "display_name": self.display_name,
            "granted": self.granted,
            "already_assigned": self.already_assigned,
        }


def check_inputs(identity: str, roles: Sequence[str]) -> None:
    """Refuse anything but a GUID identity and plain role names before a request is built (no OData injection)."""
    if not _GUID.fullmatch(identity):
        raise GrantError(f"identity must be a client id or object id (a GUID), got {identity[:60]!r}")
    bad = [role[:60] for role in roles if not _ROLE.fullmatch(role)]
    if bad or not roles or len(roles) > 50:
        raise GrantError(f"roles must be 1..50 permission names like User.Read.All, got {bad or list(roles)}")


async def grant_app_roles(client: httpx.AsyncClient, identity: str, roles: Sequence[str]) -> GrantResult:
    """Assign each of ``roles`` (Graph application permissions) to ``identity``'s service principal, idempotently."""
    check_inputs(identity, roles)
    graph = await _single(client, f"appId eq '{GRAPH_APP_ID}'", "Microsoft Graph's service principal")
    if graph is None:
        raise GrantError("Microsoft Graph's service principal was not found in this tenant")
    role_ids = {
        role["value"]: role["id"]
        for role in graph.get("appRoles", [])
        if "Application" in role.get("allowedMemberTypes", []) and role.get("isEnabled", True)
    }
    unknown = sorted(set(roles) - set(role_ids))
    if unknown:
        raise GrantError(f"not application permissions of Microsoft Graph: {', '.join(unknown)}")
    principal = await _find_identity(client, identity)
    held = {
        a["appRoleId"]
        for a in await _pages(client, f"/servicePrincipals/{principal['id']}/appRoleAssignments")
        if a.get("resourceId") == graph["id"]
    }
    granted, already = [], []
    for role in dict.fromkeys(roles):  # keeps order, drops repeats
        if role_ids[role] in held:
            already.append(role)
            continue
        body = {"principalId": principal["id"], "resourceId": graph["id"], "appRoleId": role_ids[role]}
        await _call(client, "POST", f"/servicePrincipals/{principal['id']}/appRoleAssignments", json=body)
        granted.append(role)
    return GrantResult(principal["id"], str(principal.get("displayName", "")), granted, already)


async def _find_identity(client: httpx.AsyncClient, identity: str) -> dict[str, Any]:
    """The service principal whose appId (client id) or, failing that, object id is ``identity``."""
    principal = await _single(client, f"appId eq '{identity}'", "the identity's service principal")
    if principal is not None:
        return principal
    response = await _call(client, "GET", f"/servicePrincipals/{identity}", allow_404=True)
    if response is None:
        raise IdentityNotFound(
            f"no service principal with client id or object id {identity} in this tenant "
            "(use the managed identity's client id: azd env get-value AZURE_IDENTITY_CLIENT_ID)"
        )
    return response


async def _single(client: httpx.AsyncClient, odata_filter: str, what: str) -> dict[str, Any] | None:
    found = await _call(client, "GET", "/servicePrincipals", params={"$filter": odata_filter})
    value = (found or {}).get("value", [])
    if len(value) > 1:
        raise GrantError(f"more than one match for {what}")
    return value[0] if value else None


async def _pages(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    """Every item of a collection, following @odata.nextLink (bounded)."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    for _ in range(_MAX_PAGES):
        if url is None:
            return items
        page = await _call(client, "GET", url) or {}
        items.extend(page.get("value", []))
        url = page.get("@odata.nextLink")
    raise GrantError(f"more than {_MAX_PAGES} pages of {path}")


async def _call(
    client: httpx.AsyncClient, method: str, url: str, *, allow_404: bool = False, **kwargs: Any
) -> dict[str, Any] | None:
    """One request; Graph's error becomes a GrantError that quotes Graph's code and message."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        raise GrantError(f"Graph unreachable: {type(error).__name__}: {str(error)[:200]}") from error
    if response.status_code == 404 and allow_404:
        return None
    if response.status_code >= 400:
        try:
            detail = response.json()["error"]
            reason = f"{detail.get('code')}: {str(detail.get('message'))[:300]}"
        except (ValueError, KeyError, TypeError):
            reason = response.text[:300]
        raise GrantError(f"Graph answered {response.status_code} to {method} {url.split('?')[0]}: {reason}")
    return response.json() if response.content else None
