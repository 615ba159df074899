"""Delta queries: the users delta and one mail folder's messages delta, page by page to the deltaLink.

A round follows ``@odata.nextLink`` until a page carries ``@odata.deltaLink``; the caller keeps that link
to ask for the next round's changes. A stored link is followed as is (``with_url``). When Graph lost the
sync state it answers 410 (``resyncRequired`` / ``SyncStateNotFound``), or 400 ``syncStateNotFound`` for
an expired directory token: all of them become ``DeltaResyncRequired`` so the caller restarts from
scratch. Pages are yielded one at a time, so a full round over a large tenant never sits in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared.errors import PermanentError, UnavailableError
from shared.graph.gateway import DIRECTORY, MAIL, GraphGateway, native_request

# Lower-cased Graph error codes that mean "this delta token is no longer usable".
RESYNC_CODES = frozenset({"resyncrequired", "syncstatenotfound", "syncstateinvalid"})
MESSAGE_FIELDS = ["id"]  # a change is all catch-up needs to know; the handlers read what they need


class DeltaResyncRequired(PermanentError):
    """Graph no longer knows the delta token: drop it and run a full round."""

    code = "delta_resync_required"


@dataclass(frozen=True)
class DeltaTarget:
    """What a delta round tracks: every user, or one mailbox's folder (``inbox`` by default)."""

    kind: Literal["users", "messages"]
    user_id: str | None = None
    folder: str = "inbox"


@dataclass(frozen=True)
class DeltaPage:
    """One page of changes; ``delta_link`` is set on the round's last page only, ``next_link`` on the others
    (a point the round can be resumed from)."""

    items: list[dict[str, Any]]
    delta_link: str | None
    next_link: str | None = None


def is_resync(error: PermanentError) -> bool:
    """Whether a Graph error means the delta token is gone (410, or a sync-state error code)."""
    return error.status == 410 or (error.upstream_code or "").lower() in RESYNC_CODES


class DeltaReader:
    """Reads delta rounds through the gateway (users under the directory breaker, mail per mailbox)."""

    def __init__(self, gateway: GraphGateway, *, max_pages: int = 10_000) -> None:
        self._gateway = gateway
        self._max_pages = max_pages  # a server that never ends a round must not keep us forever

    async def pages(self, target: DeltaTarget, link: str | None, *, latest: bool = False) -> AsyncIterator[DeltaPage]:
        """The pages of one round: from ``link`` (a stored deltaLink), else a full round.

        ``latest`` (users only, no ``link``): Graph's "sync from now" shortcut, a deltaLink without items.
        """
        send = self._first(target, link, latest)
        for _ in range(self._max_pages):
            body = await self._call(target, send)
            items = body.get("value")
            if not isinstance(items, list):
                raise UnavailableError("Graph answered a delta page without a value array")
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            if isinstance(delta_link, str):
                yield DeltaPage([i for i in items if isinstance(i, dict)], delta_link)
                return
            if not isinstance(next_link, str):
                raise UnavailableError("Graph answered a delta page with neither nextLink nor deltaLink")
            yield DeltaPage([i for i in items if isinstance(i, dict)], None, next_link)
            send = self._follow(target, next_link)
        raise UnavailableError(f"a delta round did not end within {self._max_pages} pages")

    async def _call(self, target: DeltaTarget, send: Callable[[], Awaitable[httpx.Response]]) -> dict[str, Any]:
        workload, mailbox = (MAIL, target.user_id) if target.kind == "messages" else (DIRECTORY, None)
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
            base = str(self._gateway.client.request_adapter.base_url).rstrip("/")
            return self._follow(target, f"{base}/users/delta?$deltatoken=latest")
        query = None
        if target.kind == "messages":
            query = builder.DeltaRequestBuilderGetQueryParameters(select=MESSAGE_FIELDS)
        return lambda: builder.get(request_configuration=native_request(query))

    def _follow(self, target: DeltaTarget, url: str) -> Callable[[], Awaitable[httpx.Response]]:
        builder = self._builder(target).with_url(url)
        return lambda: builder.get(request_configuration=native_request())
