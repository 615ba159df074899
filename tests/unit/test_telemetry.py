"""Logs carry the invocation id and never a credential."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.telemetry import CorrelationFilter, get_logger, invocation_scope, redact


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer eyJhbGciOi.abcdefghijk.signature",
        "AccountName=a;AccountKey=abc123==;EndpointSuffix=x",
        "https://host/api/x?code=functionkey123&y=1",
        "token eyJ0eXAiOiJKV1QiLCJhbGc.eyJhdWQiOiJodHRwczovL2dyYXBo.sig",
        'clientState=my-subscription-secret"',
    ],
)
def test_redact_hides_credentials(text: str) -> None:
    """Bearer tokens, JWTs, account keys, function keys and clientState values are masked."""
    cleaned = redact(text)
    for secret in ("abcdefghijk", "abc123", "functionkey123", "eyJhdWQiOiJodHRwczovL2dyYXBo", "my-subscription"):
        assert secret not in cleaned


async def test_concurrent_invocations_keep_their_own_ids(caplog: pytest.LogCaptureFixture) -> None:
    """Records from interleaved async invocations are stamped with their own invocation id."""
    logger = get_logger("test")
    caplog.handler.addFilter(CorrelationFilter())

    both_inside = asyncio.Barrier(2)

    async def invocation(inv: str) -> None:
        with invocation_scope(inv, "op"):
            await both_inside.wait()  # each logs only once the other's scope is open too
            logger.warning("inside %s", inv)

    with caplog.at_level(logging.WARNING):
        await asyncio.gather(invocation("a"), invocation("b"))
    stamped = {r.getMessage(): getattr(r, "invocation_id", None) for r in caplog.records}
    assert stamped == {"inside a": "a", "inside b": "b"}


def test_handlers_added_to_the_app_logger_redact_records_of_child_loggers() -> None:
    """A handler on the app logger (as the Azure Monitor exporter adds) gets child loggers' records redacted
    once protect_handlers ran: a logger-level filter would not have seen them."""
    import io

    from shared.telemetry import LOGGER_NAME, protect_handlers

    stream = io.StringIO()
    exporter_like = logging.StreamHandler(stream)
    app_logger = logging.getLogger(LOGGER_NAME)
    app_logger.addHandler(exporter_like)
    try:
        protect_handlers()
        with invocation_scope("inv-9", "op"):
            get_logger("events.webhook").warning("sent Authorization: Bearer abc.def.ghi with AccountKey=xyz123")
    finally:
        app_logger.removeHandler(exporter_like)
    written = stream.getvalue()
    assert "abc.def.ghi" not in written
    assert "xyz123" not in written
    assert "Bearer ***" in written
