"""shared.graph.permissions over a fake Graph (httpx.MockTransport): paging, role filtering, ambiguity.
The command's behaviour against the real simulator is in tests/integration/graph/test_grant_roles.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shared.graph.permissions import GRAPH_APP_ID, GrantError, grant_app_roles

IDENTITY = "11111111-2222-4333-8444-555555555555"
GRAPH_SP = {
    "id": "graph-sp",
    "appId": GRAPH_APP_ID,
    "appRoles": [
        {"id": "r-user", "value": "User.Read.All", "allowedMemberTypes": ["Application"], "isEnabled": True},
        {"id": "r-mail", "value": "Mail.Read", "allowedMemberTypes": ["Application"], "isEnabled": True},
        {"id": "r-deleg", "value": "Mail.Send", "allowedMemberTypes": ["User"], "isEnabled": True},
        {"id": "r-off", "value": "Mail.ReadWrite", "allowedMemberTypes": ["Application"], "isEnabled": False},
    ],
}
MI_SP = {"id": "mi-sp", "appId": IDENTITY, "displayName": "id-graphfn"}


def fake_graph(principals: list[dict[str, Any]], posts: list[dict[str, Any]]) -> httpx.AsyncClient:
    """Graph with two pages of existing assignments (User.Read.All on the second page)."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1.0")
        if path == "/servicePrincipals":
            wanted = request.url.params["$filter"].split("'")[1]
            return httpx.Response(200, json={"value": [p for p in principals if p.get("appId") == wanted]})
        if path == "/servicePrincipals/mi-sp/appRoleAssignments" and request.method == "GET":
            if request.url.params.get("page") == "2":
                return httpx.Response(200, json={"value": [{"resourceId": "graph-sp", "appRoleId": "r-user"}]})
            following = "https://graph.test/v1.0/servicePrincipals/mi-sp/appRoleAssignments?page=2"
            other = {"resourceId": "another-api", "appRoleId": "r-mail"}  # same role id, another resource
            return httpx.Response(200, json={"value": [other], "@odata.nextLink": following})
        if path == "/servicePrincipals/mi-sp/appRoleAssignments" and request.method == "POST":
            posts.append(json.loads(request.content))
            return httpx.Response(201, json={"id": "new"})
        return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound", "message": "nope"}})

    return httpx.AsyncClient(base_url="https://graph.test/v1.0/", transport=httpx.MockTransport(handle))


async def test_assignments_on_later_pages_and_other_resources_are_told_apart() -> None:
    """A role held on page 2 counts as held; the same role id on another resource does not."""
    posts: list[dict[str, Any]] = []
    async with fake_graph([GRAPH_SP, MI_SP], posts) as client:
        result = await grant_app_roles(client, IDENTITY, ["User.Read.All", "Mail.Read"])
    assert (result.granted, result.already_assigned) == (["Mail.Read"], ["User.Read.All"])
    assert posts == [{"principalId": "mi-sp", "resourceId": "graph-sp", "appRoleId": "r-mail"}]


@pytest.mark.parametrize("role", ["Mail.Send", "Mail.ReadWrite"])
async def test_delegated_or_disabled_roles_are_not_application_permissions(role: str) -> None:
    """Only enabled roles open to applications can be granted; nothing is posted otherwise."""
    posts: list[dict[str, Any]] = []
    async with fake_graph([GRAPH_SP, MI_SP], posts) as client:
        with pytest.raises(GrantError, match=f"not application permissions of Microsoft Graph: {role}"):
            await grant_app_roles(client, IDENTITY, [role])
    assert posts == []


async def test_ambiguous_identity_and_missing_graph_are_errors() -> None:
    """Two principals with one appId, or no Graph service principal: refused before any assignment."""
    posts: list[dict[str, Any]] = []
    async with fake_graph([GRAPH_SP, MI_SP, {**MI_SP, "id": "twin"}], posts) as client:
        with pytest.raises(GrantError, match="more than one match"):
            await grant_app_roles(client, IDENTITY, ["User.Read.All"])
    async with fake_graph([MI_SP], posts) as client:
        with pytest.raises(GrantError, match="Microsoft Graph's service principal was not found"):
            await grant_app_roles(client, IDENTITY, ["User.Read.All"])
    assert posts == []
