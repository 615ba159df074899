"""Errors become HTTP responses in one place, with one shape and no internals."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from shared import errors
from shared.http import response_for
from shared.invocation import run_http


class Ctx:
    invocation_id = "inv-1"


def _body(response: func.HttpResponse) -> dict[str, Any]:
    return dict(json.loads(response.get_body()))


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.InvalidInputError("bad id"), 400, "invalid_request"),
        (errors.NotFoundError("no such user", status=404), 404, "not_found"),
        (errors.ThrottledError("slow down", retry_after=7.2, status=429), 503, "throttled"),
        (errors.CircuitOpenError("graph", retry_after=3), 503, "circuit_open"),
        (errors.AccessDeniedError("403", status=403), 502, "upstream_access_denied"),
        (errors.ConfigurationError("AzureWebJobsStorage: required"), 500, "configuration_error"),
    ],
)
def test_error_tree_maps_to_statuses(error: errors.AppError, status: int, code: str) -> None:
    """Each branch of the error tree has one HTTP status and code; transient ones carry Retry-After."""
    response = response_for(error)
    assert response.status_code == status
    assert _body(response)["error"]["code"] == code
    if isinstance(error, errors.TransientError):
        assert int(response.headers["Retry-After"]) >= 1
    if isinstance(error, errors.ThrottledError):
        assert response.headers["Retry-After"] == "8"


async def test_unexpected_exception_is_a_clean_500(app_env: dict[str, str]) -> None:
    """A bug inside a handler answers a JSON 500 without the exception text or a stack trace."""

    async def handler() -> func.HttpResponse:
        raise RuntimeError("secret internal detail")

    response = await run_http("boom", Ctx(), handler)  # type: ignore[arg-type]
    assert response.status_code == 500
    assert "secret internal detail" not in response.get_body().decode()
    assert _body(response) == {"error": {"code": "internal_error", "message": "unexpected error"}}
