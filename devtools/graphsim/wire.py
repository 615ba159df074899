"""Graph's wire vocabulary: the request/response values the routes exchange, error bodies,
and query-option parsing shared by every collection route.

Routes work on these plain values instead of aiohttp objects so ``$batch`` can run an
inner request through exactly the same code as a top-level one.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

JsonObj = dict[str, Any]

# What Graph sends; kiota keys its parsers on the part before the first ';'.
JSON_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

# Graph's error code for a status when a fault rule does not name one.
DEFAULT_ERROR_CODES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is malformed or incorrect."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("ResourceNotFound", "Resource could not be discovered."),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    410: ("resyncRequired", "Resync required. Replace any local cached copies with a full resync."),
    429: ("TooManyRequests", "Too many requests. Please retry after a while."),
    500: ("generalException", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway timed out waiting for the backend."),
}


class GraphError(Exception):
    """A Graph error response, raised anywhere inside a route and rendered in one place."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @classmethod
    def for_status(cls, status: int, headers: Mapping[str, str] | None = None) -> GraphError:
        """The error Graph would send for a bare status (used by fault rules)."""
        code, message = DEFAULT_ERROR_CODES.get(status, ("UnknownError", f"HTTP {status}"))
        return cls(status, code, message, headers)


@dataclass
class GraphRequest:
    """One Graph request as the routes see it (top-level or inside ``$batch``)."""

    method: str
    path: str  # decoded, after "/v1.0", always starting with "/"
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str  # "http://host:port/v1.0", for nextLink/deltaLink/@odata.context
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    batch_id: str | None = None

    @property
    def client_request_id(self) -> str:
        """Graph echoes the caller's id, or uses its own request id when there is none."""
        return self.headers.get("client-request-id") or self.request_id

    def json_body(self) -> JsonObj:
        """The body as a JSON object, or Graph's 400 for anything else."""
        try:
            data = json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set "
                "and payload is of valid JSON format.",
            )
        return data


@dataclass
class GraphResponse:
    """A route's answer; ``drop`` asks the transport to close without answering."""

    status: int
    body: JsonObj | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    text: str | None = None  # non-JSON bodies (none today, kept for completeness)


def error_body(error: GraphError, request: GraphRequest, now: datetime) -> JsonObj:
    """Graph's error shape, including the ``innerError`` ids support asks for."""
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {
                "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request.request_id,
                "client-request-id": request.client_request_id,
            },
        }
    }


def parse_top(query: Mapping[str, str], default: int, maximum: int, code: str) -> int:
    """Read ``$top``: an integer in 1..maximum, else the 400 Graph sends."""
    raw = query.get("$top")
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid $top query option value '{raw}'.") from None
    if not 1 <= top <= maximum:
        raise GraphError(400, code, f"Invalid page size specified: '{top}'. Must be between 1 and {maximum} inclusive.")
    return top


def parse_skip(query: Mapping[str, str]) -> int:
    """Read ``$skip`` (a non-negative integer)."""
    raw = query.get("$skip", "0")
    try:
        skip = int(raw)
    except ValueError:
        skip = -1
    if skip < 0:
        raise GraphError(400, "BadRequest", f"Invalid $skip query option value '{raw}'.")
    return skip


def parse_select(query: Mapping[str, str], known: Mapping[str, str], type_name: str, code: str) -> list[str] | None:
    """Read ``$select`` against ``known`` (lower-case name -> canonical name).

    Graph matches property names case-insensitively and rejects unknown ones with 400.
    """
    raw = query.get("$select")
    if raw is None or not raw.strip():
        return None
    selected: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        canonical = known.get(name.lower())
        if canonical is None:
            raise GraphError(400, code, f"Could not find a property named '{name}' on type '{type_name}'.")
        if canonical not in selected:
            selected.append(canonical)
    return selected


UNSIMULATED_OPTIONS = ("$filter", "$search", "$expand", "$count", "$apply")


def reject_unsimulated(query: Mapping[str, str]) -> None:
    """Refuse query options the simulator would otherwise silently ignore (a wrong answer
    is worse than a clear 400 in a test)."""
    for option in UNSIMULATED_OPTIONS:
        if option in query:
            raise GraphError(400, "BadRequest", f"graphsim does not simulate the {option} query option.")


def pick(obj: JsonObj, names: list[str], always: tuple[str, ...] = ()) -> JsonObj:
    """Project ``obj`` onto ``always`` + ``names``, in that order, keeping Graph's nulls."""
    out: JsonObj = {}
    for name in (*always, *names):
        if name in obj:
            out[name] = obj[name]
    return out


_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def preferred_page_size(headers: Mapping[str, str], default: int, maximum: int) -> int:
    """Honour ``Prefer: odata.maxpagesize=N`` (delta rounds use it instead of ``$top``)."""
    match = _MAXPAGESIZE.search(headers.get("Prefer", ""))
    if not match:
        return default
    return max(1, min(int(match.group(1)), maximum))


def link(base_url: str, path: str, params: Mapping[str, str]) -> str:
    """An absolute nextLink/deltaLink, query options percent-encoded as Graph does."""
    return f"{base_url}{path}?{urlencode(params)}" if params else f"{base_url}{path}"


def json_response(body: JsonObj, status: int = 200) -> GraphResponse:
    """A JSON answer (headers are added by the pipeline)."""
    return GraphResponse(status=status, body=body)


def offset_token(kind: str, offset: int, prefix: str = "") -> str:
    """An opaque page token for a listing paged by position (``kind`` names the listing)."""
    return prefix + base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def read_offset_token(kind: str, token: str | None, prefix: str = "") -> int:
    """The position ``offset_token`` wrote; anything else is Graph's expired-page-token 400."""
    if not token:
        return 0
    try:
        raw = token.removeprefix(prefix)
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        written, _, offset = text.partition(":")
        if written != kind:
            raise ValueError(written)
        return max(0, int(offset))
    except (ValueError, UnicodeDecodeError):
        raise GraphError(400, "Directory_ExpiredPageToken", "The specified page token value has expired.") from None
