"""Users and mail, served through the two-tier cache in front of the resilient Graph gateway (the cache
layout and the user's shape belong to the directory domain, ``shared/directory.py``).

``X-Cache`` tells the truth about Graph: a by-UPN request whose alias had to be resolved made a Graph
call, so it is a ``miss`` even when the user or page itself came from the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from shared.api.params import PageRequest, UserId, encode_cursor, is_continuation
from shared.cache import CacheKey, CacheManager, CacheResult, Source
from shared.directory import (
    ALIASES_NAMESPACE,
    CACHE_NAMES,
    MESSAGE_RESOURCE_FIELDS,
    MESSAGES_NAMESPACE,
    USER_FIELDS,
    GraphReads,
    message_key,
    shape_message,
    shape_user,
    user_key,
)
from shared.errors import InvalidInputError, NotFoundError
from shared.telemetry import get_logger

log = get_logger("api.users")


class MirrorLookup(Protocol):
    """The directory mirror's reads (``shared.mirror.reads.MirrorReader``): None means "ask the cache"."""

    async def find(self, user_id: str, *, is_guid: bool) -> CacheResult[dict[str, Any]] | None: ...


class DirectoryApi:
    """Reads users and message pages, mirror or cache first; Graph failures surface as the app's errors.

    ``graph`` is a provider, awaited only when a fetch actually happens: a process answering from cache
    never builds the Graph client (nor imports the SDK). ``mirror`` (when the directory is mirrored)
    answers users while it is in sync; anything it does not know goes the cache path.
    """

    def __init__(
        self, cache: CacheManager, graph: Callable[[], Awaitable[GraphReads]], mirror: MirrorLookup | None = None
    ) -> None:
        self._cache = cache
        self._graph_provider = graph
        self._mirror = mirror

    async def _graph(self) -> GraphReads:
        return await self._graph_provider()

    async def _guid(self, user: UserId, prefetched: dict[str, dict[str, Any]]) -> tuple[str, Source | None]:
        """The user's guid and, for a UPN, where its alias came from; a UPN is resolved through the alias
        cache (one Graph call when cold, which also yields the user itself, kept in ``prefetched``)."""
        if user.is_guid:
            return user.value, None

        async def resolve() -> dict[str, Any]:
            graph = await self._graph()
            shaped = shape_user(await graph.get_user(user.value, select=list(USER_FIELDS)))
            prefetched["user"] = shaped
            return {"id": shaped["id"].lower()}

        alias: CacheResult[dict[str, Any]] = await self._cache.get_or_set(
            CacheKey(ALIASES_NAMESPACE, user.value), resolve
        )
        guid = alias.value.get("id")
        if not isinstance(guid, str):
            raise NotFoundError("user not found")
        return guid, alias.source

    async def user(self, user: UserId) -> CacheResult[dict[str, Any]]:
        """The user's stable shape: from the mirror when it knows the user, else through the cache."""
        if self._mirror is not None:
            mirrored = await self._mirror.find(user.value, is_guid=user.is_guid)
            if mirrored is not None:
                return mirrored
        result = await self._cached_user(user)
        if user.is_guid or _upn_of(result.value) == user.value:
            return result
        # The cached alias names a user whose UPN is no longer this one (renamed): drop it and ask again,
        # so an old UPN answers as Graph does (404) instead of with the renamed user.
        await self._cache.invalidate(CacheKey(ALIASES_NAMESPACE, user.value))
        return await self._cached_user(user)

    async def _cached_user(self, user: UserId) -> CacheResult[dict[str, Any]]:
        prefetched: dict[str, dict[str, Any]] = {}
        guid, alias_source = await self._guid(user, prefetched)

        async def fetch() -> dict[str, Any]:
            if "user" in prefetched:
                return prefetched.pop("user")
            graph = await self._graph()
            return shape_user(await graph.get_user(guid, select=list(USER_FIELDS)))

        return _with_alias_source(await self._cache.get_or_set(user_key(guid), fetch), alias_source)

    async def messages(self, user: UserId, page: PageRequest) -> CacheResult[dict[str, Any]]:
        """One page: ``{"items": [...], "next_cursor": str | None}``, newest first."""
        guid, alias_source = await self._guid(user, {})
        if page.mailbox is not None and page.mailbox != guid:
            raise InvalidInputError("cursor belongs to another mailbox; use next_cursor from this mailbox's pages")
        if page.continuation is not None:
            position = "q" + hashlib.sha256(page.continuation.encode()).hexdigest()[:32]
        else:
            position = str(page.skip)
        key = CacheKey(
            MESSAGES_NAMESPACE,
            f"{guid}|{position}|{page.top}|{','.join(page.fields)}",
            CACHE_NAMES.messages_group.format(user_id=guid),
        )

        async def fetch() -> dict[str, Any]:
            graph = await self._graph()
            items, following = await graph.list_messages(
                guid, top=page.top, select=list(page.fields), skip=page.skip, continuation=page.continuation
            )
            shaped = [{name: item.get(name) for name in page.fields} for item in items]
            cursor = None
            if following is not None and is_continuation(following):
                cursor = encode_cursor(PageRequest(page.top, page.fields, continuation=following, mailbox=guid))
            elif following is not None:
                log.warning("Graph nextLink query is not a paging continuation we follow; paging stops here")
            return {"items": shaped, "next_cursor": cursor}

        return _with_alias_source(await self._cache.get_or_set(key, fetch), alias_source)

    async def message(self, user: UserId, message_id: str) -> CacheResult[dict[str, Any]]:
        """One message (``MESSAGE_RESOURCE_FIELDS``); a rich notification may have cached it already."""
        guid, alias_source = await self._guid(user, {})

        async def fetch() -> dict[str, Any]:
            graph = await self._graph()
            return shape_message(await graph.get_message(guid, message_id, list(MESSAGE_RESOURCE_FIELDS)))

        return _with_alias_source(await self._cache.get_or_set(message_key(guid, message_id), fetch), alias_source)


def _upn_of(user: dict[str, Any]) -> str | None:
    upn = user.get("userPrincipalName")
    return upn.lower() if isinstance(upn, str) else None


def _with_alias_source(result: CacheResult[dict[str, Any]], alias_source: Source | None) -> CacheResult[dict[str, Any]]:
    """A cache hit whose UPN had to be resolved (a Graph call, or a stale alias) is reported as that."""
    hits = ("hit-l1", "hit-l2")
    if alias_source is not None and alias_source not in hits and result.source in hits:
        return dataclasses.replace(result, source=alias_source)
    return result
