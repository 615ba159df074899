"""The normalized ``Event``: what handlers see, whether a change came from a webhook or a delta query.

An event is named ``{resource kind}.{changeType}`` (``users.updated``, ``messages.created``) so handlers
subscribe by meaning, not by Graph's URL shapes. Its ``id`` is the notification identity used for
dedupe, so downstream consumers can dedupe on it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

EventSource = Literal["notification", "delta"]

_KIND_CHARS = re.compile(r"[^a-z0-9]")
# Mail notifications may name the user as ``{user guid}@{tenant guid}``; the cache knows the guid alone.
_GUID_SUFFIX = re.compile(r"@[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEYED_SEGMENT = re.compile(r"^(?P<name>[^(]*)\((?P<key>.*)\)$")


@dataclass(frozen=True)
class ResourcePath:
    """What a Graph resource path tells us: the kind of the last collection and the ids along the way."""

    kind: str
    user_id: str | None
    item_id: str | None


def parse_resource(resource: str) -> ResourcePath:
    """Read ``Users/{id}``, ``users/{id}/messages/{id}``, ``Users('id')/Messages('id')`` and the like.

    Segments alternate collection/key (a key may also sit in parentheses); the kind is the last
    collection's name, lower-cased and reduced to ``[a-z0-9]`` so it is always a valid event-name part.
    """
    pairs: list[tuple[str, str | None]] = []
    pending: str | None = None
    for segment in (s for s in resource.split("/") if s):
        keyed = _KEYED_SEGMENT.match(segment)
        if keyed:
            pairs.append((keyed["name"], keyed["key"].strip("'\"")))
            pending = None
        elif pending is None:
            pending = segment
        else:
            pairs.append((pending, segment))
            pending = None
    if pending is not None:
        pairs.append((pending, None))
    if not pairs:
        return ResourcePath("unknown", None, None)
    kind = _KIND_CHARS.sub("", pairs[-1][0].lower()) or "unknown"
    user_id = next((key for name, key in pairs if name.lower() == "users" and key), None)
    if user_id is not None:
        user_id = _GUID_SUFFIX.sub("", user_id)
    return ResourcePath(kind, user_id, pairs[-1][1])


def event_type(kind: str, change_type: str) -> str:
    """``users`` + ``updated`` → ``users.updated`` (both parts lower-case ``[a-z0-9]``)."""
    change = _KIND_CHARS.sub("", change_type.lower()) or "unknown"
    return f"{kind}.{change}"


# Without an etag two notifications of one resource cannot be told apart from a redelivery; they are
# treated as one only within this window (see ``change_identity``).
ETAGLESS_WINDOW_SECONDS = 300


def change_identity(
    kind: str,
    item_id: str | None,
    change_type: str,
    *,
    etag: str | None,
    received_at: datetime,
    notification_id: str | None = None,
    fallback: str = "",
) -> str:
    """The dedupe identity of "this version of this resource changed", shared by notifications and delta.

    It leaves out the subscription and the source, so a live notification and a delta item describing the
    same version of a message are one event. Created and updated are one class (delta cannot tell them
    apart); deleted is another. Precedence: the resource version (``@odata.etag``), else Graph's own
    notification id, else a 5-minute bucket of the receive time: a redelivery inside the bucket is caught,
    one crossing its edge runs again (at-least-once), and two real changes inside it collapse (the event
    only says "changed"; a consumer fetching the latest state still sees both).
    """
    change_class = "deleted" if change_type.lower() == "deleted" else "changed"
    if etag:
        version = f"etag:{etag}"
    elif notification_id:
        version = f"notification:{notification_id}"
    else:
        version = f"window:{int(received_at.timestamp()) // ETAGLESS_WINDOW_SECONDS}"
    parts = ["v1", kind, item_id or fallback, change_class, version]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """A change to one Graph resource, normalized for handlers and downstream consumers."""

    id: str
    type: str
    resource: str
    change_type: str
    subscription_id: str | None
    tenant_id: str | None
    user_id: str | None
    message_id: str | None
    received_at: datetime
    source: EventSource
    occurred_at: datetime | None = None
    data: Mapping[str, Any] | None = None
    version: str | None = None  # the content version the event describes (directory mirror events)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (times in ISO 8601): the wire format of ``graph-events``."""
        return {
            "id": self.id,
            "type": self.type,
            "resource": self.resource,
            "change_type": self.change_type,
            "subscription_id": self.subscription_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "message_id": self.message_id,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "received_at": self.received_at.isoformat(),
            "source": self.source,
            "data": dict(self.data) if self.data is not None else None,
            "version": self.version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
