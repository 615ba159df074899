"""The one place where results and errors become HTTP responses: JSON bodies, and every ``AppError``
mapped onto the API's single error shape ``{"error": {"code", "message"}}`` with the right status (and
``Retry-After`` for transient failures). ``shared/invocation.py`` applies it around every HTTP trigger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared import errors

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
