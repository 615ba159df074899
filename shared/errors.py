"""The app's one exception tree.

Every failure the app reports is one of these, so callers branch on meaning, not on which SDK raised::

    AppError                      base: a message and a stable machine-readable ``code``
    ├── ConfigurationError        settings are missing or malformed (fail fast at first use)
    ├── InvalidInputError         the caller's input is wrong → 400; never retried
    │   └── PayloadTooLargeError  the body is over our limit → 413 (refused before reading it where we can)
    └── UpstreamError             a dependency (Graph, Storage) failed; carries ``status`` and ``service``
        ├── TransientError        may work later; carries ``retry_after`` (seconds, or None)
        │   ├── ThrottledError    429: the dependency asked us to slow down
        │   ├── UnavailableError  5xx, timeouts, refused or dropped connections
        │   │   └── StorageUnavailableError  Table/Queue Storage did not answer (shared/storage.py)
        │   └── CircuitOpenError  our breaker refused the call without trying it
        └── PermanentError        retrying the same request cannot help
            ├── NotFoundError     404: the user, mailbox or item does not exist
            └── AccessDeniedError 401/403: our credentials or permissions are wrong

Transport failures and HTTP-status failures meet in ``TransientError``/``PermanentError`` because that
is the only distinction retry, breaker and API layers need. Errors become HTTP responses in one place
(``shared/http.py``).
"""

from __future__ import annotations

from typing import TypedDict, Unpack


class AppError(Exception):
    """Base of every error the app raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(AppError):
    """Settings are missing or malformed; the message names each setting and what was expected."""

    code = "configuration_error"


class InvalidInputError(AppError):
    """The caller sent something we will not act on (bad id, bad parameter, bad body)."""

    code = "invalid_request"


class PayloadTooLargeError(InvalidInputError):
    """The request body is larger than we accept."""

    code = "payload_too_large"


class UpstreamDetails(TypedDict, total=False):
    """What an upstream failure may say about itself (all optional)."""

    code: str | None  # our code, when a subclass's default does not fit
    status: int | None  # the dependency's HTTP status; None for transport failures
    service: str  # which dependency: "graph" (default), "storage", a breaker key, ...
    upstream_code: str | None  # the dependency's own error code (Graph's error.code)
    request_id: str | None  # the dependency's request id, for support cases


class UpstreamError(AppError):
    """A dependency failed. ``status`` is its HTTP status (None for transport failures)."""

    code = "upstream_error"

    def __init__(self, message: str, **details: Unpack[UpstreamDetails]) -> None:
        super().__init__(message, code=details.get("code"))
        self.status = details.get("status")
        self.service = details.get("service", "graph")
        self.upstream_code = details.get("upstream_code")
        self.request_id = details.get("request_id")


class TransientError(UpstreamError):
    """A failure that may go away; ``retry_after`` is the dependency's hint in seconds, if any."""

    code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, **details: Unpack[UpstreamDetails]) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class ThrottledError(TransientError):
    """429: the dependency is throttling us."""

    code = "throttled"


class UnavailableError(TransientError):
    """5xx, timeout or connection failure."""

    code = "upstream_unavailable"


class StorageUnavailableError(UnavailableError):
    """Table or Queue Storage failed to answer (transport error, timeout, 5xx, auth): the one type every
    caller degrades on. Raised only by the storage layer (``shared/storage.py``); answers about data
    (404, 409, 412) are not outages and keep their SDK types."""

    code = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, ambiguous: bool = False) -> None:
        super().__init__(message, retry_after=retry_after, service="storage")
        # The request was sent but no answer came back: Storage may have carried it out.
        self.ambiguous = ambiguous


class CircuitOpenError(TransientError):
    """The circuit breaker for ``breaker`` is open (or its probe slot is taken): the call was not made."""

    code = "circuit_open"

    def __init__(self, breaker: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"circuit '{breaker}' is open", retry_after=retry_after, service=breaker)
        self.breaker = breaker


class PermanentError(UpstreamError):
    """Retrying the same request will fail the same way."""

    code = "upstream_rejected"


class NotFoundError(PermanentError):
    """404 from the dependency."""

    code = "not_found"


class AccessDeniedError(PermanentError):
    """401/403 from the dependency: a problem with our identity or permissions, not the caller's."""

    code = "upstream_access_denied"
