"""Graph's mail routes: messages of a mailbox or folder (paged with $top/$skip, or with an opaque
$skiptoken when ``message_paging`` is "skiptoken"), a single message, mail folders, and the per-folder
messages delta."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from devtools.graphsim.delta import mail_scope, run_round
from devtools.graphsim.routing import Router
from devtools.graphsim.seed import FOLDER_DISPLAY_NAMES
from devtools.graphsim.seed import folder_id as folder_id_for
from devtools.graphsim.simulator import Simulator
from devtools.graphsim.tenant import MESSAGE_PROPERTIES, etag
from devtools.graphsim.wire import (
    GraphError,
    GraphRequest,
    GraphResponse,
    JsonObj,
    json_response,
    link,
    parse_select,
    parse_skip,
    parse_top,
    pick,
    preferred_page_size,
    reject_unsimulated,
)

MESSAGE_TYPE = "Microsoft.OutlookServices.Message"
SELECT_ERROR = "RequestBroker--ParseUri"
MAX_TOP = 1000
DEFAULT_TOP = 10
DELTA_PAGE = 10
ORDERABLE = ("receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime", "subject")


class MailRoutes:
    """Handlers over the simulator's mailboxes."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def register(self, router: Router) -> None:
        """Add the mail routes (delta before ``{message_id}``)."""
        router.add("GET", "/users/{user}/messages", self.list_messages)
        router.add("GET", "/users/{user}/messages/{message_id}", self.get_message)
        router.add("GET", "/users/{user}/mailFolders", self.list_folders)
        router.add("GET", "/users/{user}/mailFolders/{folder}", self.get_folder)
        router.add("GET", "/users/{user}/mailFolders/{folder}/messages", self.list_messages)
        router.add("GET", "/users/{user}/mailFolders/{folder}/messages/delta", self.delta)
        router.add("GET", "/users/{user}/mailFolders/{folder}/messages/delta()", self.delta)
        router.add("GET", "/users/{user}/mailFolders/{folder}/messages/{message_id}", self.get_message)

    @staticmethod
    def render(message: JsonObj, select: list[str] | None) -> JsonObj:
        """A message with its ``@odata.etag``; ``$select`` keeps ``id`` and the selection."""
        body: JsonObj = {"@odata.etag": etag(message)}
        if select is None:
            body.update(message)
        else:
            body.update(pick(message, select, always=() if "id" in select else ("id",)))
        return body

    def _mailbox(self, params: Mapping[str, str]) -> tuple[str, str | None]:
        """(user id, folder id or None) from the path parameters."""
        user_id = self._sim.tenant.mailbox_of(params["user"])["id"]
        folder = params.get("folder")
        folder_id = None if folder is None else self._sim.tenant.folder(user_id, folder)[1]
        return user_id, folder_id

    async def list_messages(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """Messages newest first by default; nextLink carries ``$skip`` as Graph's does, or an opaque
        ``$skiptoken`` (``message_paging="skiptoken"``); a received ``$skiptoken`` is honoured either way."""
        reject_unsimulated(request.query)
        user_id, folder_id = self._mailbox(params)
        top = parse_top(request.query, DEFAULT_TOP, MAX_TOP, "ErrorInvalidRequest")
        token = request.query.get("$skiptoken")
        if token is not None and "$skip" in request.query:
            raise GraphError(400, "BadRequest", "$skip and $skiptoken cannot be combined.")
        skip = parse_skip(request.query) if token is None else _read_skip_token(token, user_id, folder_id)
        select = parse_select(request.query, MESSAGE_PROPERTIES, MESSAGE_TYPE, SELECT_ERROR)
        orderby = request.query.get("$orderby", "receivedDateTime desc")
        field, descending = _parse_orderby(orderby)
        messages = self._sim.tenant.user_messages(user_id, folder_id)
        messages.sort(key=lambda m: (m.get(field) or "", m["id"]), reverse=descending)
        page = messages[skip : skip + top]
        path = request.path.rstrip("/")
        selection = "" if select is None else f"({','.join(select)})"
        scope = path.removeprefix("/")
        context = f"{request.base_url}/$metadata#users('{params['user']}')/{scope.split('/', 2)[2]}{selection}"
        body: JsonObj = {"@odata.context": context}
        if skip + top < len(messages):
            query = {"$top": str(top)}
            if self._sim.config.message_paging == "skiptoken":
                query["$skiptoken"] = _skip_token(skip + top, user_id, folder_id)
            else:
                query["$skip"] = str(skip + top)
            if select is not None:
                query["$select"] = ",".join(select)
            if "$orderby" in request.query:
                query["$orderby"] = orderby
            body["@odata.nextLink"] = link(request.base_url, path, query)
        body["value"] = [self.render(m, select) for m in page]
        return json_response(body)

    async def get_message(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """One message (in the mailbox, or in the given folder)."""
        user_id, folder_id = self._mailbox(params)
        select = parse_select(request.query, MESSAGE_PROPERTIES, MESSAGE_TYPE, SELECT_ERROR)
        message = self._sim.tenant.find_message(user_id, params["message_id"])
        if folder_id is not None and message["parentFolderId"] != folder_id:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        selection = "" if select is None else f"({','.join(select)})"
        context = f"{request.base_url}/$metadata#users('{params['user']}')/messages{selection}/$entity"
        return json_response({"@odata.context": context, **self.render(message, select)})

    def _folder_json(self, user_id: str, name: str, folder_id: str) -> JsonObj:
        messages = self._sim.tenant.user_messages(user_id, folder_id)
        return {
            "id": folder_id,
            "displayName": FOLDER_DISPLAY_NAMES[name],
            "parentFolderId": folder_id_for(user_id, "msgfolderroot"),
            "childFolderCount": 0,
            "unreadItemCount": sum(1 for m in messages if not m["isRead"]),
            "totalItemCount": len(messages),
            "sizeInBytes": sum(len(m["body"]["content"]) + 512 for m in messages),
            "isHidden": False,
        }

    async def list_folders(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """The user's well-known folders (no child folders are simulated)."""
        user_id, _ = self._mailbox(params)
        folders = self._sim.tenant.folders[user_id]
        return json_response(
            {
                "@odata.context": f"{request.base_url}/$metadata#users('{params['user']}')/mailFolders",
                "value": [self._folder_json(user_id, name, fid) for name, fid in folders.items()],
            }
        )

    async def get_folder(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """One folder by well-known name or id."""
        user_id, _ = self._mailbox(params)
        name, folder_id = self._sim.tenant.folder(user_id, params["folder"])
        context = f"{request.base_url}/$metadata#users('{params['user']}')/mailFolders/$entity"
        return json_response({"@odata.context": context, **self._folder_json(user_id, name, folder_id)})

    async def delta(self, request: GraphRequest, params: dict[str, str]) -> GraphResponse:
        """Messages delta of one folder; deletions and moves-out come as ``@removed``."""
        user_id, folder_id = self._mailbox(params)
        assert folder_id is not None
        select = parse_select(request.query, MESSAGE_PROPERTIES, MESSAGE_TYPE, SELECT_ERROR)
        tenant = self._sim.tenant

        def render(message_id: str, selected: list[str] | None) -> JsonObj | None:
            message = tenant.messages.get(user_id, {}).get(message_id)
            if message is None or message["parentFolderId"] != folder_id:
                return None
            return {"@odata.type": "#microsoft.graph.message", **self.render(message, selected)}

        page = run_round(
            self._sim.changes,
            mail_scope(user_id, folder_id),
            skip_token=request.query.get("$skiptoken"),
            delta_token=request.query.get("$deltatoken"),
            select=select,
            page_size=preferred_page_size(request.headers, DELTA_PAGE, 1000),
            current_ids=lambda: [m["id"] for m in tenant.user_messages(user_id, folder_id)],
            render=render,
            removed=lambda mid: {
                "@odata.type": "#microsoft.graph.message",
                "id": mid,
                "@removed": {"reason": "deleted"},
            },
        )
        path = request.path.rstrip("/")
        body: JsonObj = {"@odata.context": f"{request.base_url}/$metadata#Collection(message)"}
        body.update(page.links(request.base_url, path))
        body["value"] = page.value
        return json_response(body)


def _skip_token(offset: int, user_id: str, folder_id: str | None) -> str:
    """An opaque position in one mailbox (or folder) listing: standard base64 with '+', '/' and '=', so a
    client that does not keep the nextLink's percent-encoding breaks here as it would on Graph."""
    pad = "~~~??>>>"  # encodes to "+" and "/": the token always needs percent-encoding in a URL
    body = json.dumps({"o": offset, "u": user_id, "f": folder_id, "pad": pad}, separators=(",", ":"))
    return base64.b64encode(body.encode()).decode()


def _read_skip_token(token: str, user_id: str, folder_id: str | None) -> int:
    """The offset of a ``$skiptoken`` this listing issued; anything else (another mailbox's) is a 400."""
    invalid = GraphError(400, "BadRequest", f"Invalid $skiptoken query option value '{token[:40]}'.")
    try:
        data = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("u") != user_id or data.get("f") != folder_id:
        raise invalid
    offset = data.get("o")
    if type(offset) is not int or offset < 0:
        raise invalid
    return offset


def _parse_orderby(text: str) -> tuple[str, bool]:
    parts = text.split()
    lookup = {name.lower(): name for name in ORDERABLE}
    field = lookup.get(parts[0].lower()) if parts else None
    direction = parts[1].lower() if len(parts) > 1 else "asc"
    if field is None or len(parts) > 2 or direction not in ("asc", "desc"):
        raise GraphError(400, "ErrorInvalidProperty", f"The $orderby expression '{text}' is not supported.")
    return field, direction == "desc"
