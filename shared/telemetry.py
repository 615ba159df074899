"""Logging with invocation correlation, and secret redaction on every record.

The Functions worker owns the root logger in production; we only add a filter that stamps each record
with the current invocation id and function name (kept in context variables, so concurrent async
invocations do not mix) and scrubs bearer tokens and connection-string keys. Locally (no handler yet) we
also install a handler, as text or JSON lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

_invocation_id: contextvars.ContextVar[str] = contextvars.ContextVar("invocation_id", default="-")
_operation: contextvars.ContextVar[str] = contextvars.ContextVar("operation", default="-")

# Bearer tokens, JWT-looking strings, and key=value secrets inside connection strings or URLs.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|sig|client_secret|code|clientState)=)[^;&\s\"']+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
)

LOGGER_NAME = "graphapp"


def get_logger(name: str) -> logging.Logger:
    """A logger under the app's namespace, so levels and filters apply to all app modules at once."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def redact(text: str) -> str:
    """The text with anything that looks like a credential replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


@contextlib.contextmanager
def invocation_scope(invocation_id: str, operation: str) -> Iterator[None]:
    """Tag every log record emitted inside (including in tasks it starts) with the invocation."""
    tokens = (_invocation_id.set(invocation_id), _operation.set(operation))
    try:
        yield
    finally:
        _invocation_id.reset(tokens[0])
        _operation.reset(tokens[1])


def current_invocation_id() -> str:
    return _invocation_id.get()


class CorrelationFilter(logging.Filter):
    """Adds ``invocation_id`` and ``operation`` to records and redacts secrets from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.invocation_id = _invocation_id.get()
        record.operation = _operation.get()
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines parse without regexes."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "invocation_id": getattr(record, "invocation_id", "-"),
            "operation": getattr(record, "operation", "-"),
        }
        for key, value in record.__dict__.items():
            if key.startswith("ctx_"):
                entry[key[4:]] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(operation)s %(invocation_id)s] %(message)s"


def protect_handlers() -> None:
    """Put correlation and redaction on every handler of the root and app loggers.

    Handler filters, not logger filters: a logger's filter does not see records of its child loggers
    (``graphapp.events.webhook``), a handler's sees every record it would write. Call again after anything
    adds handlers (the Azure Monitor exporter attaches its own to the app logger).
    """
    for logger in (logging.getLogger(), logging.getLogger(LOGGER_NAME)):
        for handler in logger.handlers:
            if not any(isinstance(f, CorrelationFilter) for f in handler.filters):
                handler.addFilter(CorrelationFilter())


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Idempotently attach correlation/redaction to the log handlers; add a handler only if none exists."""
    logging.getLogger(LOGGER_NAME).setLevel(level)
    root = logging.getLogger()
    if root.handlers:
        protect_handlers()
        for handler in root.handlers:
            # A console handler someone else installed (the local harness) writes JSON lines when asked to;
            # the Functions worker's own handler (not a StreamHandler) keeps its format.
            if log_format == "json" and type(handler) is logging.StreamHandler:
                handler.setFormatter(JsonFormatter())
        return
    handler = logging.StreamHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
