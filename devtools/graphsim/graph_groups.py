"""Graph's group routes: ``/groups``, ``/groups/{id}``, its ``members`` and ``transitiveMembers`` (optionally
cast to ``microsoft.graph.user``), and ``/groups/delta`` with ``members@delta`` for one group.

The delta is what a mailbox fleet needs: a first round lists the group's direct members, later rounds only
who joined or left (``@removed``). Graph serves it for many groups at once and for other properties too; the
simulator serves it for one group (``$filter=id eq '{id}'``) and refuses anything else with a clear 400.
"""

from __future__ import annotations

import re

from devtools.graphsim.delta import members_scope, run_round
from devtools.graphsim.graph_users import USER_TYPE, UserRoutes
from devtools.graphsim.routing import Router
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.tenant import USER_PROPERTIES
from devtools.graphsim.wire import (
    GraphError,
    GraphRequest,
    GraphResponse,
    JsonObj,
    json_response,
    link,
    offset_token,
    parse_select,
    parse_top,
    preferred_page_size,
    read_offset_token,
    reject_unsimulated,
)

GROUP_TYPE = "microsoft.graph.group"
USER_CASTS = ("microsoft.graph.user", "graph.user")
MAX_TOP = 999
DELTA_PAGE = 100
MEMBERS_PAGING = "graphsim-members"
_FILTER_ONE = re.compile(r"id eq '([0-9a-fA-F-]{36})'")


class GroupRoutes:
    """Handlers over the simulator's groups."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def register(self, router: Router) -> None:
        router.add("GET", "/groups", self.list_groups)
        router.add("GET", "/groups/delta", self.delta)
        router.add("GET", "/groups/delta()", self.delta)
        router.add("GET", "/groups/{id}", self.get_group)
        for collection in ("members", "transitiveMembers"):
            router.add("GET", f"/groups/{{id}}/{collection}", self.members)
            for cast in USER_CASTS:  # Graph takes the short form the SDK sends, and the full one
                router.add("GET", f"/groups/{{id}}/{collection}/{cast}", self.members)

    async def list_groups(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        reject_unsimulated(request.query)
        groups = list(self._sim.tenant.groups.values())
        return json_response({"@odata.context": f"{request.base_url}/$metadata#groups", "value": groups})

    async def get_group(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        group = self._sim.tenant.find_group(params["id"])
        return json_response({"@odata.context": f"{request.base_url}/$metadata#groups/$entity", **group})

    async def members(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """A page of members ($top 1..999, default 100; $select applies to users); nested groups are listed
        by ``members`` and expanded by ``transitiveMembers``; the user cast leaves groups out."""
        reject_unsimulated(request.query)
        tenant = self._sim.tenant
        group = tenant.find_group(params["id"])
        top = parse_top(request.query, 100, MAX_TOP, "Request_UnsupportedQuery")
        select = parse_select(request.query, USER_PROPERTIES, USER_TYPE, "Request_BadRequest")
        transitive = "/transitiveMembers" in request.path
        users_only = request.path.rsplit("/", 1)[-1] in USER_CASTS
        if transitive:
            entries = [(member, "user") for member in tenant.transitive_user_ids(group["id"])]
            if not users_only:
                entries += [(g, "group") for g, kind in tenant.members[group["id"]].items() if kind == "group"]
        else:
            entries = [(m, kind) for m, kind in tenant.members[group["id"]].items() if not users_only or kind == "user"]
        offset = read_offset_token(MEMBERS_PAGING, request.query.get("$skiptoken"))
        body: JsonObj = {"@odata.context": f"{request.base_url}/$metadata#directoryObjects"}
        if offset + top < len(entries):
            query = {"$top": str(top), "$skiptoken": offset_token(MEMBERS_PAGING, offset + top)}
            if select is not None:
                query["$select"] = ",".join(select)
            body["@odata.nextLink"] = link(request.base_url, request.path, query)
        body["value"] = [self._member(m, kind, select) for m, kind in entries[offset : offset + top]]
        return json_response(body)

    def _member(self, member_id: str, kind: str, select: list[str] | None) -> JsonObj:
        tenant = self._sim.tenant
        if kind == "group":
            name = tenant.groups[member_id]["displayName"]
            return {"@odata.type": f"#{GROUP_TYPE}", "id": member_id, "displayName": name}
        return {"@odata.type": f"#{USER_TYPE}", **UserRoutes.render(tenant.users[member_id], select)}

    async def delta(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """``GET /groups/delta?$filter=id eq '{id}'&$select=members``: the group with ``members@delta`` (each
        member's type and id, ``@removed`` for one who left); paged by ``Prefer: odata.maxpagesize``."""
        tenant = self._sim.tenant
        skip, delta = request.query.get("$skiptoken"), request.query.get("$deltatoken")
        token = skip or delta
        if token:
            scope = self._sim.changes.scope_of(token)
            if not scope.startswith("members:"):
                raise GraphError(400, "BadRequest", "The token does not belong to this resource.")
            group_id = scope.removeprefix("members:")
        else:
            match = _FILTER_ONE.fullmatch(request.query.get("$filter", "").strip())
            select = [s.strip().lower() for s in request.query.get("$select", "").split(",") if s.strip()]
            if match is None or "members" not in select:
                raise GraphError(
                    400,
                    "Request_UnsupportedQuery",
                    "graphsim simulates groups delta for one group only: $filter=id eq '{id}' and $select=members.",
                )
            group_id = match.group(1).lower()
        group = tenant.find_group(group_id)

        def render(member_id: str, _: list[str] | None) -> JsonObj | None:
            kind = tenant.members.get(group["id"], {}).get(member_id)
            return None if kind is None else {"@odata.type": f"#microsoft.graph.{kind}", "id": member_id}

        page = run_round(
            self._sim.changes,
            members_scope(group["id"]),
            skip_token=skip,
            delta_token=delta,
            select=None,
            page_size=preferred_page_size(request.headers, DELTA_PAGE, 999),
            current_ids=lambda: list(tenant.members.get(group["id"], {})),
            render=render,
            removed=lambda member_id: {"id": member_id, "@removed": {"reason": "deleted"}},
        )
        body: JsonObj = {"@odata.context": f"{request.base_url}/$metadata#groups"}
        body.update(page.links(request.base_url, "/groups/delta"))
        body["value"] = [{"id": group["id"], "displayName": group["displayName"], "members@delta": page.value}]
        return json_response(body)
