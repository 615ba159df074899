"""The one place where results and errors become HTTP responses.

Triggers call ``run_http``: it tags logs with the invocation, turns every
``AppError`` into the API's single error shape ``{"error": {"code", "message"}}`` with the right status
(and ``Retry-After`` for transient failures), and turns anything unexpected into a 500 without a stack
trace in the body (the trace goes to the log).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func

from shared import errors
from shared.telemetry import configure_logging, get_logger, invocation_scope

log = get_logger("http")

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    """A JSON response (compact separators: smaller bodies, same meaning)."""
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers=dict(headers or {}),
        mimetype=JSON,
        charset="utf-8",
    )


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None) -> func.HttpResponse:
    """The API's one error shape; ``Retry-After`` in whole seconds (at least 1) when given."""
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def response_for(error: errors.AppError) -> func.HttpResponse:
    """Map the error tree onto HTTP statuses (the only such mapping in the app)."""
    if isinstance(error, errors.PayloadTooLargeError):
        return error_response(413, error.code, error.message)
    if isinstance(error, errors.InvalidInputError):
        return error_response(400, error.code, error.message)
    if isinstance(error, errors.NotFoundError):
        return error_response(404, error.code, error.message)
    if isinstance(error, errors.TransientError):
        retry_after = error.retry_after if error.retry_after is not None else 5.0
        return error_response(503, error.code, "the upstream service is unavailable", retry_after=retry_after)
    if isinstance(error, errors.PermanentError):
        return error_response(502, error.code, "the upstream service rejected the request")
    if isinstance(error, errors.ConfigurationError):
        return error_response(500, error.code, "the service is misconfigured")
    return error_response(500, "internal_error", "unexpected error")


async def run_http(
    name: str, context: func.Context, handler: Callable[[], Awaitable[func.HttpResponse]]
) -> func.HttpResponse:
    """Run one HTTP invocation's handler with log correlation and the app's error mapping."""
    with invocation_scope(context.invocation_id, name):
        try:
            configure_logging_once()
            return await handler()
        except errors.AppError as error:
            level = logging.WARNING if isinstance(error, _SERVER_SIDE) else logging.INFO
            log.log(level, "%s failed: %s (%s)", name, error.code, error.message)
            return response_for(error)
        except Exception:
            log.exception("%s failed unexpectedly", name)
            return error_response(500, "internal_error", "unexpected error")


_SERVER_SIDE = (errors.UpstreamError, errors.ConfigurationError)
_logging_configured = False


def configure_logging_once() -> None:
    """Apply the logging settings (and Azure Monitor export, when configured) on the process's first
    invocation, not at import."""
    global _logging_configured
    if not _logging_configured:
        from shared.services import settings

        current = settings()
        configure_logging(current.log_level, current.log_format)
        if current.applicationinsights_connection_string is not None:
            from shared.services import registry
            from shared.status import start_telemetry

            start_telemetry(current.applicationinsights_connection_string.reveal(), registry)
        _logging_configured = True
