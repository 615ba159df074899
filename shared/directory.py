"""The directory domain (users and their mail): which fields we serve, how Graph's answers are shaped, how
the cache names a user's entries, and the adapters the notification handlers use. The API (``shared/api``)
and the event pipeline (``shared/events``) both build on this module.

Cache layout (the notification handlers invalidate by these names, ``CACHE_NAMES``):
- ``users`` / ``user:{guid}``, group ``user:{guid}``: the stable user shape;
- ``aliases`` / ``{upn}``: userPrincipalName → guid, so every other entry is keyed by the immutable guid
  and a notification (which names the guid) reaches entries requested by UPN too;
- ``messages`` / ``{guid}|{position}|{top}|{fields}``, group ``messages:{guid}``: one page of a mailbox;
  ``position`` is ``0`` (first page), a v1 cursor's ``$skip``, or ``q`` + a hash of the nextLink query;
- ``message`` / ``{guid}|{message id}``, group ``messages:{guid}``: one message's ``MESSAGE_RESOURCE_FIELDS``,
  written from a rich notification's data as well as from Graph (``newer_message`` orders the two).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.api.params import MESSAGE_RESOURCE_FIELDS as MESSAGE_RESOURCE_FIELDS
from shared.errors import UnavailableError
from shared.events.handlers import CacheNames
from shared.events.model import Event

if TYPE_CHECKING:  # the cache package (and azure.core) is imported on first use
    from shared.cache import CacheKey, CacheManager

USERS_NAMESPACE = "users"
ALIASES_NAMESPACE = "aliases"
MESSAGES_NAMESPACE = "messages"
MESSAGE_NAMESPACE = "message"
USER_FIELDS = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "jobTitle",
    "department",
    "officeLocation",
    "mobilePhone",
    "businessPhones",
    "preferredLanguage",
)
CACHE_NAMES = CacheNames(
    users_namespace=USERS_NAMESPACE,
    user_key="user:{user_id}",
    user_group="user:{user_id}",
    messages_group="messages:{user_id}",
)


class GraphReads(Protocol):
    """The Graph calls this module needs (``shared.graph.gateway.GraphGateway`` provides them)."""

    async def get_user(self, user_id: str, select: list[str] | None = None) -> dict[str, Any]: ...

    async def list_messages(
        self, user_id: str, *, top: int, select: list[str], skip: int = 0, continuation: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def get_message(self, user_id: str, message_id: str, select: list[str]) -> dict[str, Any]: ...


def shape_user(raw: dict[str, Any]) -> dict[str, Any]:
    """Always the same keys, whatever Graph included; ``businessPhones`` is always a list."""
    user = {name: raw.get(name) for name in USER_FIELDS}
    phones = user["businessPhones"]
    user["businessPhones"] = [p for p in phones if isinstance(p, str)] if isinstance(phones, list) else []
    if not isinstance(user["id"], str):
        raise UnavailableError("Graph returned a user without an id")
    return user


def user_key(guid: str) -> CacheKey:
    """Where the user's shape is cached (grouped under the user, so a user notification drops it)."""
    from shared.cache import CacheKey

    return CacheKey(
        CACHE_NAMES.users_namespace,
        CACHE_NAMES.user_key.format(user_id=guid),
        CACHE_NAMES.user_group.format(user_id=guid),
    )


async def enrich_event(graph: GraphReads, event: Event) -> dict[str, Any] | None:
    """The changed resource for forwarded events (``FORWARD_ENRICH``); nothing for deletions."""
    if event.user_id is None or event.change_type == "deleted":
        return None
    if event.type.startswith("users."):
        return shape_user(await graph.get_user(event.user_id, select=list(USER_FIELDS)))
    if event.type.startswith("messages.") and event.message_id is not None:
        return shape_message(await graph.get_message(event.user_id, event.message_id, list(MESSAGE_RESOURCE_FIELDS)))
    return None


def shape_message(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A message as we serve and cache it: ``MESSAGE_RESOURCE_FIELDS``, whatever else Graph included."""
    return {name: raw.get(name) for name in MESSAGE_RESOURCE_FIELDS}


def message_key(guid: str, message_id: str) -> CacheKey:
    """Where one message is cached: grouped with the mailbox's pages, so any change in the mailbox that
    came without data drops it with them. Message ids are case-sensitive; the user guid is not."""
    from shared.cache import CacheKey

    guid = guid.lower()
    return CacheKey(MESSAGE_NAMESPACE, f"{guid}|{message_id}", CACHE_NAMES.messages_group.format(user_id=guid))


def newer_message(candidate: Mapping[str, Any]) -> Callable[[Any | None], bool]:
    """Whether ``candidate`` may replace a cached message: it must carry every field we serve and a
    ``lastModifiedDateTime`` later than the cached one's. Graph does not promise notifications in order, so a
    redelivered older one loses; equal times with different content (two changes in Outlook's one-second
    resolution) are ambiguous and lose too, leaving the entry invalidated for Graph to answer."""
    version = _modified_at(candidate)

    def replaces(current: Any | None) -> bool:
        if version is None or any(name not in candidate for name in MESSAGE_RESOURCE_FIELDS):
            return False
        if not isinstance(current, dict):
            return True
        known = _modified_at(current)
        if known is None or version > known:
            return True
        return version == known and current == shape_message(candidate)

    return replaces


def _modified_at(message: Mapping[str, Any]) -> datetime | None:
    raw = message.get("lastModifiedDateTime")
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class CacheInvalidationAdapter:
    """The notification handlers' view of the cache (``shared.events.handlers.CacheInvalidation``)."""

    def __init__(self, cache: CacheManager) -> None:
        self._cache = cache

    async def invalidate_key(self, namespace: str, key: str) -> None:
        from shared.cache import CacheKey

        await self._cache.invalidate(CacheKey(namespace, key.lower()))

    async def invalidate_group(self, group: str) -> None:
        await self._cache.invalidate_group(group.lower())

    async def invalidate_groups(self, groups: Collection[str]) -> None:
        await self._cache.invalidate_groups({group.lower() for group in groups})

    async def update_message(self, user_id: str, message_id: str, data: Mapping[str, Any], *, created: bool) -> bool:
        """Cache a notification's message data if it is the newest known (never data naming another id)."""
        if data.get("id") != message_id:
            return False
        key, shaped = message_key(user_id, message_id), shape_message(data)
        return await self._cache.put_if(key, shaped, newer_message(data), likely_new=created)
