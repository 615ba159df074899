"""Translate Graph HTTP responses and transport failures into the app's error tree (the one place).

Graph calls use the SDK's native response handler (no model parsing), so failures arrive as status codes
and Graph's error JSON ``{"error": {"code", "message", "innerError": {"request-id"}}}`` — or as garbage
from a proxy; neither may crash the caller or leak into logs unbounded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.exceptions import AzureError, ClientAuthenticationError

from shared import errors
from shared.resilience.retry import parse_retry_after

MAX_MESSAGE = 300
TRANSIENT_STATUSES = {500, 502, 503, 504}
# Failures before a response: httpx transport errors, and azure-identity failing to reach the token endpoint.
TRANSPORT_ERRORS = (httpx.TransportError, AzureError, TimeoutError)


def _graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """Graph's error code and message, if the body is Graph's error shape; else (None, a short reason)."""
    try:
        body = json.loads(response.content)
        error = body["error"]
        code = error.get("code")
        message = error.get("message")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, f"HTTP {response.status_code}"
    code_text = code[:100] if isinstance(code, str) else None
    message_text = message[:MAX_MESSAGE] if isinstance(message, str) else f"HTTP {response.status_code}"
    return code_text, message_text


def error_for(response: httpx.Response) -> errors.UpstreamError:
    """The app error for a non-2xx Graph response."""
    status = response.status_code
    code, message = _graph_error(response)
    common: dict[str, Any] = {
        "status": status,
        "service": "graph",
        "upstream_code": code,
        "request_id": response.headers.get("request-id"),
    }
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        return errors.ThrottledError(f"Graph throttled the request: {message}", retry_after=retry_after, **common)
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        return errors.UnavailableError(f"Graph is unavailable: {message}", retry_after=retry_after, **common)
    if status == 404:
        return errors.NotFoundError(f"Graph: not found ({message})", **common)
    if status in (401, 403):
        return errors.AccessDeniedError(f"Graph refused our credentials: {message}", **common)
    return errors.PermanentError(f"Graph rejected the request: {message}", **common)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response, or the translated error (raised)."""
    if not 200 <= response.status_code < 300:
        raise error_for(response)
    if response.status_code == 204 or not response.content:
        return {}
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise errors.UnavailableError(
            "Graph answered with a body that is not JSON", status=response.status_code
        ) from error
    if not isinstance(body, dict):
        raise errors.UnavailableError("Graph answered with an unexpected JSON shape", status=response.status_code)
    return body


def transport_error(error: Exception) -> errors.UpstreamError:
    """A failure before any response (see ``TRANSPORT_ERRORS``): only refused credentials are permanent; a
    token endpoint that is unreachable or not ready (``CredentialUnavailableError``) is transient."""
    from azure.identity import CredentialUnavailableError

    if isinstance(error, ClientAuthenticationError) and not isinstance(error, CredentialUnavailableError):
        return errors.AccessDeniedError("could not obtain a Graph token", status=401)
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return errors.UnavailableError("Graph did not answer in time")
    return errors.UnavailableError(f"could not reach Graph ({type(error).__name__})")
