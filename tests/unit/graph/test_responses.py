"""Graph responses become the app's errors in one place, whatever Graph (or a proxy) sent."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import errors
from shared.graph.responses import error_for, json_body, transport_error


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers or {})


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (429, errors.ThrottledError, "throttled"),
        (503, errors.UnavailableError, "upstream_unavailable"),
        (504, errors.UnavailableError, "upstream_unavailable"),
        (500, errors.UnavailableError, "upstream_unavailable"),
        (404, errors.NotFoundError, "not_found"),
        (401, errors.AccessDeniedError, "upstream_access_denied"),
        (403, errors.AccessDeniedError, "upstream_access_denied"),
        (400, errors.PermanentError, "upstream_rejected"),
        (409, errors.PermanentError, "upstream_rejected"),
    ],
)
def test_statuses_map_to_the_error_tree(status: int, kind: type[errors.UpstreamError], code: str) -> None:
    """Each Graph status lands on one branch: transient (retry later) or permanent (do not retry)."""
    body = b'{"error": {"code": "Some_Code", "message": "m", "innerError": {"request-id": "r"}}}'
    error = error_for(_response(status, body, {"request-id": "rid-1"}))
    assert type(error) is kind
    assert error.code == code
    assert (error.status, error.upstream_code, error.request_id) == (status, "Some_Code", "rid-1")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("abc", None),
        ("1e5", None),
        ("nan", None),
        ("", None),
        ("99999999999999", 86400.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_parsed_defensively(header: str, expected: float | None) -> None:
    """Malformed Retry-After is ignored, negative and past dates are 0, huge values are capped."""
    error = error_for(_response(429, b"", {"Retry-After": header}))
    assert isinstance(error, errors.ThrottledError)
    assert error.retry_after == expected


@given(st.binary(max_size=2000), st.sampled_from([400, 404, 429, 500, 503]))
def test_garbage_error_bodies_never_break_translation(body: bytes, status: int) -> None:
    """Any body (HTML from a proxy, truncated JSON, binary) still yields an app error with a short message."""
    error = error_for(_response(status, body))
    assert isinstance(error, errors.UpstreamError)
    assert len(error.message) < 400


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_2xx_with_a_non_object_body_is_transient(body: bytes) -> None:
    """A success status with a body that is not a JSON object is an upstream fault, not a crash."""
    with pytest.raises(errors.UnavailableError):
        json_body(_response(200, body))


def test_transport_failures_are_transient() -> None:
    """Timeouts and connection errors are retryable; they carry no HTTP status."""
    request = httpx.Request("GET", "http://127.0.0.1/x")
    assert isinstance(transport_error(httpx.ReadTimeout("t", request=request)), errors.UnavailableError)
    assert isinstance(transport_error(httpx.ConnectError("c", request=request)), errors.UnavailableError)


def test_an_unavailable_token_endpoint_is_transient_and_refused_credentials_are_not() -> None:
    """A managed-identity endpoint that is not ready is retried later; credentials Entra refused are not."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    assert isinstance(transport_error(CredentialUnavailableError("imds not ready")), errors.UnavailableError)
    assert isinstance(transport_error(ClientAuthenticationError("AADSTS7000215")), errors.AccessDeniedError)
    assert isinstance(transport_error(TimeoutError()), errors.UnavailableError)
