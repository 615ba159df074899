"""Validation of everything a caller puts in a URL: user ids, page sizes, field lists and cursors.

All of it is checked before any cache or Graph call, so hostile input (path tricks, control characters,
huge values, forged cursors) ends as a 400 and never reaches Graph.

A messages cursor (v2) carries the query of Graph's ``@odata.nextLink`` as is (``$skip`` or an opaque
``$skiptoken``, Microsoft's advice is not to interpret it), the mailbox it belongs to, and the page's top
and fields. It never carries a scheme, host or path: the next request is always built from our own
``GRAPH_BASE_URL`` and the mailbox of the request URL, so a forged cursor cannot send our token to another
host or read another mailbox; the query's options are limited to the paging ones. Version 1 cursors
(``$skip`` only) are still accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from shared.errors import InvalidInputError

MAX_USER_ID = 256
MAX_MESSAGE_ID = 512  # Outlook ids are ~150 characters; immutable ids a little longer
# Graph's message ids are URL-safe base64 (letters, digits, '-', '_', '=' padding).
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_=-]+")
MAX_CURSOR = 4096
MAX_CONTINUATION = 2048  # a nextLink's query; Graph's skiptokens are a few hundred characters
# The query options a messages nextLink may carry; anything else ($expand, $filter...) is refused.
CONTINUATION_OPTIONS = frozenset({"$skiptoken", "$skip", "$top", "$select", "$orderby"})
# Characters of an already percent-encoded query (RFC 3986 query, no '#', no spaces or controls).
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]+")
MAX_SKIP = 100_000
DEFAULT_TOP = 25
MAX_TOP = 100

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Entra UPN: local part of letters, digits and ' . - _ ! # ^ ~ + (guests carry "#EXT#"), then a DNS domain.
_UPN = re.compile(
    r"(?P<local>[A-Za-z0-9'._!#^~+-]{1,113})@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+)"
)

MESSAGE_FIELDS = (
    "id",
    "subject",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "receivedDateTime",
    "sentDateTime",
    "isRead",
    "isDraft",
    "hasAttachments",
    "importance",
    "bodyPreview",
    "conversationId",
    "internetMessageId",
    "webLink",
    "categories",
    "flag",
    "parentFolderId",
    "lastModifiedDateTime",
)
DEFAULT_MESSAGE_FIELDS = (
    "id",
    "subject",
    "from",
    "receivedDateTime",
    "isRead",
    "hasAttachments",
    "importance",
    "bodyPreview",
)
# One message as ``GET users/{id}/messages/{message_id}`` serves and caches it, and as rich notifications
# select it: the page defaults plus the version that orders a notification's data against the cache's.
MESSAGE_RESOURCE_FIELDS = (*DEFAULT_MESSAGE_FIELDS, "lastModifiedDateTime")


@dataclass(frozen=True)
class UserId:
    """A validated user reference: a GUID (lower-cased) or a userPrincipalName (lower-cased)."""

    value: str
    is_guid: bool


def parse_user_id(raw: str | None) -> UserId:
    """A GUID or a userPrincipalName; anything else is a 400 before any lookup."""
    if raw is None or not raw or len(raw) > MAX_USER_ID:
        raise InvalidInputError("user_id must be a GUID or a userPrincipalName (at most 256 characters)")
    if _GUID.fullmatch(raw):
        return UserId(str(uuid.UUID(raw)), is_guid=True)
    match = _UPN.fullmatch(raw)
    if match is None or ".." in raw or raw.startswith(".") or match["local"].endswith("."):
        raise InvalidInputError("user_id must be a GUID or a userPrincipalName")
    return UserId(raw.lower(), is_guid=False)


def parse_message_id(raw: str | None) -> str:
    """A Graph message id (case-sensitive, kept as is); anything else is a 400 before any lookup."""
    if raw is None or not 0 < len(raw) <= MAX_MESSAGE_ID or not _MESSAGE_ID.fullmatch(raw):
        raise InvalidInputError(f"message_id must be a Graph message id (URL-safe base64, at most {MAX_MESSAGE_ID})")
    return raw


def parse_top(raw: str | None) -> int:
    """Page size 1..100 (default 25)."""
    if raw is None or raw == "":
        return DEFAULT_TOP
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_TOP:  # ASCII digits only: "²".isdigit()
        raise InvalidInputError(f"top must be an integer from 1 to {MAX_TOP}")
    return int(raw)


def parse_fields(raw: str | None) -> tuple[str, ...]:
    """A comma-separated subset of ``MESSAGE_FIELDS`` (``id`` always included), in canonical order."""
    if raw is None or raw == "":
        return DEFAULT_MESSAGE_FIELDS
    if len(raw) > 1000:
        raise InvalidInputError("fields is too long")
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = sorted(wanted - set(MESSAGE_FIELDS))
    if unknown or not wanted:
        shown = ", ".join(name[:40] for name in unknown[:5])
        raise InvalidInputError(f"fields may only name: {', '.join(MESSAGE_FIELDS)} (unknown: {shown})")
    wanted.add("id")
    return tuple(name for name in MESSAGE_FIELDS if name in wanted)


@dataclass(frozen=True)
class PageRequest:
    """What one messages page asks for; a cursor pins top and fields so every page is consistent.

    ``continuation`` is the query of Graph's nextLink for this page and ``mailbox`` the guid it belongs to
    (both set by v2 cursors); ``skip`` comes from a v1 cursor.
    """

    top: int
    fields: tuple[str, ...]
    skip: int = 0
    continuation: str | None = None
    mailbox: str | None = None


def is_continuation(query: str) -> bool:
    """Whether ``query`` is a nextLink query we follow: bounded, percent-encoded, paging options only,
    and carrying one position (``$skiptoken`` or ``$skip``)."""
    if not 0 < len(query) <= MAX_CONTINUATION or not _QUERY_CHARS.fullmatch(query):
        return False
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return False
    names = [name.lower() for name, _ in pairs]
    return (
        len(set(names)) == len(names)
        and set(names) <= CONTINUATION_OPTIONS
        and len({"$skiptoken", "$skip"} & set(names)) == 1
    )


def encode_cursor(page: PageRequest) -> str:
    """An opaque, URL-safe cursor for the page that follows (v2: needs ``continuation`` and ``mailbox``)."""
    if page.continuation is None or page.mailbox is None or not is_continuation(page.continuation):
        raise ValueError("a cursor needs a valid continuation query and its mailbox")
    data = {"v": 2, "q": page.continuation, "u": page.mailbox, "t": page.top, "f": list(page.fields)}
    body = json.dumps(data, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> PageRequest:
    invalid = InvalidInputError("cursor is not valid; use next_cursor from a previous response")
    if len(raw) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", raw):
        raise invalid
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError) as error:
        raise invalid from error
    if not isinstance(data, dict) or data.get("v") not in (1, 2):
        raise invalid
    top, fields = data.get("t"), data.get("f")
    if type(top) is not int or not 1 <= top <= MAX_TOP:
        raise invalid
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise invalid
    try:
        canonical = parse_fields(",".join(fields))
    except InvalidInputError as error:
        raise invalid from error
    if data["v"] == 1:
        skip = data.get("s")
        if type(skip) is not int or not 0 < skip <= MAX_SKIP:
            raise invalid
        return PageRequest(top=top, fields=canonical, skip=skip)
    query, mailbox = data.get("q"), data.get("u")
    if not isinstance(query, str) or not is_continuation(query):
        raise invalid
    if not isinstance(mailbox, str) or not _GUID.fullmatch(mailbox) or mailbox != mailbox.lower():
        raise invalid
    return PageRequest(top=top, fields=canonical, continuation=query, mailbox=mailbox)


def parse_page_request(params: Mapping[str, str]) -> PageRequest:
    """``top``, ``fields`` and ``cursor`` as one request; with a cursor, top/fields must agree with it."""
    top = parse_top(params.get("top"))
    fields = parse_fields(params.get("fields"))
    cursor = params.get("cursor")
    if cursor is None or cursor == "":
        return PageRequest(top=top, fields=fields)
    page = _decode_cursor(cursor)
    if (params.get("top") and top != page.top) or (params.get("fields") and fields != page.fields):
        raise InvalidInputError("top and fields must match the cursor's (or be omitted)")
    return page
