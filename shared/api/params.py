"""Validation of everything a caller puts in a URL: user ids, page sizes, field lists and cursors.

All of it is checked before any cache or Graph call, so hostile input (path tricks, control characters,
huge values, forged cursors) ends as a 400 and never reaches Graph.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import InvalidInputError

MAX_USER_ID = 256
MAX_CURSOR = 512
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
    """What one messages page asks for; a cursor pins top and fields so every page is consistent."""

    top: int
    fields: tuple[str, ...]
    skip: int = 0


def encode_cursor(page: PageRequest) -> str:
    """An opaque, URL-safe cursor for the page that follows."""
    body = json.dumps({"v": 1, "s": page.skip, "t": page.top, "f": list(page.fields)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> PageRequest:
    invalid = InvalidInputError("cursor is not valid; use next_cursor from a previous response")
    if len(raw) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", raw):
        raise invalid
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError) as error:
        raise invalid from error
    if not isinstance(data, dict) or data.get("v") != 1:
        raise invalid
    skip, top, fields = data.get("s"), data.get("t"), data.get("f")
    if type(skip) is not int or type(top) is not int or not isinstance(fields, list):
        raise invalid
    if not (0 < skip <= MAX_SKIP and 1 <= top <= MAX_TOP) or not all(isinstance(f, str) for f in fields):
        raise invalid
    try:
        canonical = parse_fields(",".join(fields))
    except InvalidInputError as error:
        raise invalid from error
    return PageRequest(top=top, fields=canonical, skip=skip)


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
