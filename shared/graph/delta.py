"""Delta queries: the users delta and one mail folder's messages delta, page by page to the deltaLink.

A round follows ``@odata.nextLink`` until a page carries ``@odata.deltaLink``; the caller keeps that link
to ask for the next round's changes. Links are handed out relative to the Graph base URL
(``users/delta?$deltatoken=...``) and always followed on the current ``GRAPH_BASE_URL`` (``with_url``):
a stored link outlives a change of base URL, and an absolute one (rows stored before) is rebased onto it,
never followed to its own host, and only when its path is a Graph delta path. When Graph lost the
sync state it answers 410 (``resyncRequired`` / ``SyncStateNotFound``), or 400 ``syncStateNotFound`` for
an expired directory token: all of them become ``DeltaResyncRequired`` so the caller restarts from
scratch. Pages are yielded one at a time, so a full round over a large tenant never sits in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from shared.errors import PermanentError, UnavailableError
from shared.graph.gateway import DIRECTORY, MAIL, GraphGateway, native_get

# Lower-cased Graph error codes that mean "this delta token is no longer usable".
RESYNC_CODES = frozenset({"resyncrequired", "syncstatenotfound", "syncstateinvalid"})
MESSAGE_FIELDS = ["id"]  # a change is all catch-up needs to know; the handlers read what they need
# The path of a delta link after the version root: users/delta, users/{id}/mailFolders/{f}/messages/delta,
# users('{id}')/mailFolders('{f}')/messages/delta, .../microsoft.graph.delta(), me/... (mail examples).
_DELTA_PATH = re.compile(r"(?:users|me)(?:[/(][^?#]*)?/(?:microsoft\.graph\.)?delta(?:\(\))?", re.IGNORECASE)
_VERSION_ROOT = re.compile(r"/(?:v1\.0|beta)/", re.IGNORECASE)


class DeltaResyncRequired(PermanentError):
    """Graph no longer knows the delta token: drop it and run a full round."""

    code = "delta_resync_required"


@dataclass(frozen=True)
class DeltaTarget:
    """What a delta round tracks: every user, or one mailbox's folder (``inbox`` by default)."""

    kind: Literal["users", "messages"]
    user_id: str | None = None
    folder: str = "inbox"
    select: tuple[str, ...] | None = None  # users: the properties a round asks for (Graph's default if None)


@dataclass(frozen=True)
class DeltaPage:
    """One page of changes; ``delta_link`` is set on the round's last page only, ``next_link`` on the others
    (a point the round can be resumed from)."""

    items: list[dict[str, Any]]
    delta_link: str | None
    next_link: str | None = None


def relative_link(link: str, base_url: str) -> str:
    """A delta link as ``path?query`` after the Graph version root (``users/delta?$deltatoken=...``).

    An absolute link loses its scheme, host and version root (``/v1.0/``, ``/beta/``, or the path of
    ``base_url``); a relative one is checked as it is. Raises ``ValueError`` unless the path is a Graph
    delta path, so no stored link can make us call another host or another API.
    """
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        base_path = urlsplit(base_url).path.rstrip("/") + "/"
        root = _VERSION_ROOT.search(parts.path)
        if root is not None:
            path = parts.path[root.end() :]
        elif parts.path.startswith(base_path) and base_path != "/":
            path = parts.path[len(base_path) :]
        else:
            raise ValueError("a delta link without a Graph version root")
    else:
        path = parts.path
    if not _DELTA_PATH.fullmatch(path) or parts.fragment or "\\" in path or ".." in path:
        raise ValueError("not a Graph delta link")
    return f"{path}?{parts.query}" if parts.query else path


def absolute_link(link: str, base_url: str) -> str:
    """``link`` (relative, or absolute under any host) on ``base_url``: the URL a delta call goes to."""
    return f"{base_url.rstrip('/')}/{relative_link(link, base_url)}"


def is_resync(error: PermanentError) -> bool:
    """Whether a Graph error means the delta token is gone (410, or a sync-state error code)."""
    return error.status == 410 or (error.upstream_code or "").lower() in RESYNC_CODES


class DeltaReader:
    """Reads delta rounds through the gateway (users under the directory breaker, mail per mailbox)."""

    def __init__(
        self,
        gateway: GraphGateway,
        *,
        max_pages: int = 10_000,
        pace: Callable[[], Awaitable[None]] | None = None,
        on_response: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        self._gateway = gateway
        self._max_pages = max_pages  # a server that never ends a round must not keep us forever
        self._pace = pace  # awaited before every page request (the request budget, shared/graph/pacing.py)
        self._on_response = on_response  # sees every answer's headers (the budget reads throttling)

    async def pages(self, target: DeltaTarget, link: str | None, *, latest: bool = False) -> AsyncIterator[DeltaPage]:
        """The pages of one round: from ``link`` (a stored deltaLink, relative or absolute), else a full round.
        The links of the pages are relative to the base URL (see ``relative_link``).

        ``latest`` (users only, no ``link``): Graph's "sync from now" shortcut, a deltaLink without items.
        """
        send = self._first(target, link, latest)
        for _ in range(self._max_pages):
            if self._pace is not None:
                await self._pace()
            body = await self._call(target, send)
            items = body.get("value")
            if not isinstance(items, list):
                raise UnavailableError("Graph answered a delta page without a value array")
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            if isinstance(delta_link, str):
                yield DeltaPage([i for i in items if isinstance(i, dict)], self._relative(delta_link))
                return
            if not isinstance(next_link, str):
                raise UnavailableError("Graph answered a delta page with neither nextLink nor deltaLink")
            next_link = self._relative(next_link)
            yield DeltaPage([i for i in items if isinstance(i, dict)], None, next_link)
            send = self._follow(target, next_link)
        raise UnavailableError(f"a delta round did not end within {self._max_pages} pages")

    async def _call(self, target: DeltaTarget, send: Callable[[], Awaitable[httpx.Response]]) -> dict[str, Any]:
        workload, mailbox = (MAIL, target.user_id) if target.kind == "messages" else (DIRECTORY, None)
        observe = self._on_response
        if observe is not None:
            inner = send

            async def send() -> httpx.Response:
                response = await inner()
                observe(response)
                return response

        try:
            return await self._gateway.call(workload, send, mailbox=mailbox)
        except PermanentError as error:
            if is_resync(error):
                raise DeltaResyncRequired(
                    "Graph no longer knows the delta token; a full resync is needed",
                    status=error.status,
                    upstream_code=error.upstream_code,
                    request_id=error.request_id,
                ) from error
            raise

    def _builder(self, target: DeltaTarget) -> Any:
        client = self._gateway.client
        if target.kind == "users":
            return client.users.delta
        if target.user_id is None:
            raise ValueError("a messages delta needs a user id")
        return client.users.by_user_id(target.user_id).mail_folders.by_mail_folder_id(target.folder).messages.delta

    def _first(self, target: DeltaTarget, link: str | None, latest: bool) -> Callable[[], Awaitable[httpx.Response]]:
        if link is not None:
            return self._follow(target, link)
        builder = self._builder(target)
        if latest and target.kind == "users":
            return self._follow(target, "users/delta?$deltatoken=latest")
        query = None
        if target.kind == "messages":
            query = builder.DeltaRequestBuilderGetQueryParameters(select=MESSAGE_FIELDS)
        elif target.select:
            query = builder.DeltaRequestBuilderGetQueryParameters(select=list(target.select))
        return native_get(builder, query)

    def _base_url(self) -> str:
        return str(self._gateway.client.request_adapter.base_url)

    def _relative(self, link: str) -> str:
        try:
            return relative_link(link, self._base_url())
        except ValueError as error:
            raise UnavailableError("Graph answered a delta page whose link is not a delta link") from error

    def _follow(self, target: DeltaTarget, link: str) -> Callable[[], Awaitable[httpx.Response]]:
        """A call of ``link`` on the current base URL; a stored link that is not a delta link is unusable,
        so the round starts over (``DeltaResyncRequired``) instead of failing on every run."""
        try:
            url = absolute_link(link, self._base_url())
        except ValueError as error:
            raise DeltaResyncRequired(
                "a stored delta link is not a Graph delta link; a full resync is needed"
            ) from error
        builder = self._builder(target).with_url(url)
        return native_get(builder)
