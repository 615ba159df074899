"""Graph's user routes: ``/users``, ``/users/{id | userPrincipalName}`` and ``/users/delta``."""

from __future__ import annotations

from devtools.graphsim.delta import USERS_SCOPE, run_round
from devtools.graphsim.routing import Router
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.tenant import DEFAULT_USER_PROPERTIES, USER_PROPERTIES
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
    pick,
    preferred_page_size,
    read_offset_token,
    reject_unsimulated,
)

USER_TYPE = "microsoft.graph.user"
SELECT_ERROR = "Request_BadRequest"
MAX_TOP = 999
DELTA_PAGE = 100
USERS_PAGING = "graphsim-users"
_SKIP_PREFIX = "RFNwdAIAAQAAA"  # decorative: Graph's user skip tokens are opaque base64 too


class UserRoutes:
    """Handlers over the simulator's tenant."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def register(self, router: Router) -> None:
        """Add the user routes (delta before ``{id}`` so it is not taken for a user id)."""
        router.add("GET", "/users", self.list_users)
        router.add("GET", "/users/delta", self.delta)
        router.add("GET", "/users/delta()", self.delta)
        router.add("GET", "/users/{id}", self.get_user)

    @staticmethod
    def render(user: JsonObj, select: list[str] | None) -> JsonObj:
        """Graph's default property set, or ``id`` plus the selected properties."""
        if select is None:
            return pick(user, list(DEFAULT_USER_PROPERTIES))
        return pick(user, select, always=() if "id" in select else ("id",))

    async def list_users(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """``GET /users``: $top (1..999, default 100), $select, paging with an opaque $skiptoken."""
        reject_unsimulated(request.query)
        for option in ("$orderby", "$skip"):
            if option in request.query:
                raise GraphError(400, "Request_UnsupportedQuery", f"graphsim does not simulate {option} on users.")
        top = parse_top(request.query, 100, MAX_TOP, "Request_UnsupportedQuery")
        select = parse_select(request.query, USER_PROPERTIES, USER_TYPE, SELECT_ERROR)
        offset = read_offset_token(USERS_PAGING, request.query.get("$skiptoken"), _SKIP_PREFIX)
        users = list(self._sim.tenant.users.values())
        page = users[offset : offset + top]
        context = "users" if select is None else f"users({','.join(select)})"
        body: JsonObj = {"@odata.context": f"{request.base_url}/$metadata#{context}"}
        if offset + top < len(users):
            params = {"$top": str(top)}
            if select is not None:
                params["$select"] = ",".join(select)
            params["$skiptoken"] = offset_token(USERS_PAGING, offset + top, _SKIP_PREFIX)
            body["@odata.nextLink"] = link(request.base_url, "/users", params)
        body["value"] = [self.render(u, select) for u in page]
        return json_response(body)

    async def get_user(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """``GET /users/{id | userPrincipalName}`` with optional $select."""
        select = parse_select(request.query, USER_PROPERTIES, USER_TYPE, SELECT_ERROR)
        user = self._sim.tenant.find_user(params["id"])
        context = "users/$entity" if select is None else f"users({','.join(select)})/$entity"
        return json_response({"@odata.context": f"{request.base_url}/$metadata#{context}", **self.render(user, select)})

    async def delta(self, request: GraphRequest, _: dict[str, str]) -> GraphResponse:
        """``GET /users/delta``: initial round over pages, then changes since the deltaLink."""
        select = parse_select(request.query, USER_PROPERTIES, USER_TYPE, SELECT_ERROR)
        tenant = self._sim.tenant

        def render(user_id: str, selected: list[str] | None) -> JsonObj | None:
            user = tenant.users.get(user_id)
            return None if user is None else self.render(user, selected)

        def partial(user_id: str, selected: list[str] | None, changed: frozenset[str]) -> JsonObj | None:
            # Graph's users delta returns an updated user as its id plus (at least) the changed properties.
            user = tenant.users.get(user_id)
            if user is None:
                return None
            chosen = [name for name in (selected or DEFAULT_USER_PROPERTIES) if name in changed]
            return pick(user, chosen, always=("id",))

        page = run_round(
            self._sim.changes,
            USERS_SCOPE,
            skip_token=request.query.get("$skiptoken"),
            delta_token=request.query.get("$deltatoken"),
            select=select,
            page_size=preferred_page_size(request.headers, DELTA_PAGE, 999),
            current_ids=lambda: list(tenant.users),
            render=render,
            removed=lambda user_id: {"id": user_id, "@removed": {"reason": "changed"}},
            partial=partial,
        )
        body: JsonObj = {"@odata.context": f"{request.base_url}/$metadata#users"}
        body.update(page.links(request.base_url, "/users/delta"))
        body["value"] = page.value
        return json_response(body)
