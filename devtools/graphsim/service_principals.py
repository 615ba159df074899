"""Service principals and their app role assignments: what granting Graph application permissions to a
managed identity touches (``GET /servicePrincipals?$filter=...``, ``GET|POST
/servicePrincipals/{id}/appRoleAssignments``).

The directory holds Microsoft Graph's own service principal with a few of its real application roles
(ids as published by Microsoft) and one managed identity, both seeded; assignments start empty and are
lost on reset, like the rest of the simulator's state. Only the ``$filter`` forms the app's ops command
uses are simulated (``appId eq '...'``, ``displayName eq '...'``); anything else is a clear 400.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from devtools.graphsim.wire import GraphError, GraphRequest, GraphResponse, JsonObj, json_response

if TYPE_CHECKING:  # both import the simulator, which holds a ServicePrincipals
    from devtools.graphsim.routing import Router
    from devtools.graphsim.simulator import Simulator

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SP_ID = "6f0d3b5a-1c2e-4f7a-9b8c-0d1e2f3a4b5c"
# The seeded user-assigned managed identity (docs/graph-simulator.md): its client id and object id.
IDENTITY_APP_ID = "5a1f0c3e-7d2b-4e8a-9c6f-1b2d3e4f5a6b"
IDENTITY_SP_ID = "c4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
GRAPH_APP_ROLES = {  # value -> id, Microsoft Graph's application permissions
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "Mail.Read": "810c84a8-4a9e-49e6-bf7d-12d183f40d01",
    "Mail.ReadBasic": "6be147d2-ea4f-4b5a-a3fa-3eab6f3c140a",
    "Mail.ReadBasic.All": "693c5e45-0940-467d-9b8a-1022fb9d42ef",
    "Mail.ReadWrite": "e2a3a72e-5f79-4c64-b1b1-878b674786c9",
}
_FILTER = re.compile(r"\s*(appId|displayName)\s+eq\s+'((?:[^']|'')*)'\s*", re.IGNORECASE)


@dataclass
class ServicePrincipals:
    """The directory's service principals (by object id) and the app role assignments made to them."""

    principals: dict[str, JsonObj] = field(default_factory=dict)
    assignments: dict[str, list[JsonObj]] = field(default_factory=dict)  # principal id -> its assignments

    @classmethod
    def seeded(cls) -> ServicePrincipals:
        roles = [
            {"id": role_id, "value": value, "allowedMemberTypes": ["Application"], "isEnabled": True}
            for value, role_id in GRAPH_APP_ROLES.items()
        ]
        directory = cls()
        directory.add({"id": GRAPH_SP_ID, "appId": GRAPH_APP_ID, "displayName": "Microsoft Graph", "appRoles": roles})
        directory.add(
            {
                "id": IDENTITY_SP_ID,
                "appId": IDENTITY_APP_ID,
                "displayName": "id-graphfn-sim",
                "servicePrincipalType": "ManagedIdentity",
                "appRoles": [],
            }
        )
        return directory

    def add(self, principal: JsonObj) -> None:
        self.principals[principal["id"]] = principal
        self.assignments.setdefault(principal["id"], [])

    def get(self, principal_id: str) -> JsonObj:
        principal = self.principals.get(principal_id.lower())
        if principal is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{principal_id}' does not exist or one of its queried "
                "reference-property objects are not present.",
            )
        return principal

    def matching(self, filter_text: str | None) -> list[JsonObj]:
        if filter_text is None:
            return list(self.principals.values())
        match = _FILTER.fullmatch(filter_text)
        if match is None:
            raise GraphError(400, "BadRequest", f"graphsim does not simulate this $filter: {filter_text[:200]!r}.")
        name = "appId" if match[1].lower() == "appid" else "displayName"
        wanted = match[2].replace("''", "'")
        return [p for p in self.principals.values() if str(p.get(name, "")).lower() == wanted.lower()]

    def assign(self, principal_id: str, body: JsonObj, now: datetime) -> JsonObj:
        principal = self.get(principal_id)
        if str(body.get("principalId", "")).lower() != principal["id"]:
            raise GraphError(400, "Request_BadRequest", "principalId must be the service principal in the URL.")
        resource = self.get(str(body.get("resourceId", "")))
        role_id = str(body.get("appRoleId", "")).lower()
        if role_id not in {role["id"] for role in resource.get("appRoles", [])}:
            raise GraphError(400, "Request_BadRequest", "Permission being assigned was not found on application.")
        mine = self.assignments[principal["id"]]
        if any(a["resourceId"] == resource["id"] and a["appRoleId"] == role_id for a in mine):
            raise GraphError(400, "Request_BadRequest", "Permission being assigned already exists on the object")
        assignment = {
            "id": str(uuid.uuid4()),
            "appRoleId": role_id,
            "createdDateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "principalDisplayName": principal["displayName"],
            "principalId": principal["id"],
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource["displayName"],
            "resourceId": resource["id"],
        }
        mine.append(assignment)
        return assignment


class ServicePrincipalRoutes:
    """Graph's servicePrincipals routes over the simulator's directory."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def register(self, router: Router) -> None:
        router.add("GET", "/servicePrincipals", self.list)
        router.add("GET", "/servicePrincipals/{id}", self.get)
        router.add("GET", "/servicePrincipals/{id}/appRoleAssignments", self.list_assignments)
        router.add("POST", "/servicePrincipals/{id}/appRoleAssignments", self.assign)

    async def list(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        found = self._sim.service_principals.matching(request.query.get("$filter"))
        return json_response({"@odata.context": f"{request.base_url}/$metadata#servicePrincipals", "value": found})

    async def get(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        return json_response(self._sim.service_principals.get(params["id"]))

    async def list_assignments(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        principal = self._sim.service_principals.get(params["id"])
        value = self._sim.service_principals.assignments[principal["id"]]
        return json_response({"value": list(value)})

    async def assign(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        assignment = self._sim.service_principals.assign(params["id"], request.json_body(), self._sim.clock.now())
        return json_response(assignment, status=201)
