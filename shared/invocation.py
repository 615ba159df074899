"""The invocation layer: what every trigger does around its work, in one place.

``run_http``, ``run_queue`` and ``run_timer`` tag the logs with the invocation, bootstrap logging and
telemetry once per process, and give each kind of trigger its failure rule: HTTP maps ``AppError`` onto
the API's error shape (anything unexpected is a 500 without a trace in the body); queue and timer
invocations log and re-raise, because a raised error is how they ask the host for a retry.

Together with the triggers, this is where the composition root meets the features: triggers take what
a function needs from the registry (``shared.wiring``) and pass it into feature code, which never
reaches up to the registry itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import azure.functions as func

from shared import errors, metrics
from shared.http import error_response, response_for
from shared.telemetry import configure_logging, get_logger, invocation_scope
from shared.wiring import LOOP_LAG, registry, settings

log = get_logger("invocation")

_SERVER_SIDE = (errors.UpstreamError, errors.ConfigurationError)
_bootstrapped = False
_INDEXED_AT = time.monotonic()  # the app is imported (indexed) as the process starts


def bootstrap_once() -> None:
    """Apply the logging settings (and Azure Monitor export, when configured) on the process's first
    invocation, not at import: indexing the app must stay cheap and side-effect free."""
    global _bootstrapped
    # One event loop serves every trigger of the process: its lag is sampled once, for all of them.
    registry.get_sync(LOOP_LAG).ensure_running()
    if _bootstrapped:
        return
    current = settings()
    configure_logging(current.log_level, current.log_format)
    if current.applicationinsights_connection_string is not None:
        from shared.status import start_telemetry
        from shared.storage import trace_calls
        from shared.wiring import subscription_records

        connection = current.applicationinsights_connection_string.reveal()
        start_telemetry(connection, subscription_records(registry), current.applicationinsights_authentication_string)
        trace_calls(metrics.storage_span)  # Table and Queue calls get their database / messaging spans
    _bootstrapped = True


def _span(name: str, context: func.Context, trigger: str) -> AbstractContextManager[Any]:
    """The invocation's span, a child of the host's trace (``context.trace_context``), once telemetry is on."""
    trace = getattr(context, "trace_context", None)
    parent, state = getattr(trace, "trace_parent", None), getattr(trace, "trace_state", None)
    return metrics.invocation_span(name, context.invocation_id, trigger, parent, state)


def _processing(queue: str, msg: func.QueueMessage) -> tuple[str, str, dict[str, str | int]]:
    from shared.metrics.semconv import queue_process

    return queue_process(queue, msg.id or "", msg.dequeue_count or 1)


async def run_http(
    name: str, context: func.Context, handler: Callable[[], Awaitable[func.HttpResponse]]
) -> func.HttpResponse:
    """One HTTP invocation: log correlation and the app's error mapping."""
    with invocation_scope(context.invocation_id, name):
        try:
            bootstrap_once()
            with _span(name, context, "http"):
                return await handler()
        except errors.AppError as error:
            level = logging.WARNING if isinstance(error, _SERVER_SIDE) else logging.INFO
            log.log(level, "%s failed: %s (%s)", name, error.code, error.message)
            return response_for(error)
        except Exception:
            log.exception("%s failed unexpectedly", name)
            return error_response(500, "internal_error", "unexpected error")


async def run_queue(
    name: str,
    context: func.Context,
    msg: func.QueueMessage,
    handler: Callable[[], Awaitable[object]],
    *,
    queue: str,
) -> None:
    """One queue invocation of a message from ``queue``; an error is logged (code and message only) and
    re-raised for redelivery (then ``<queue>-poison`` after ``maxDequeueCount``). Its span has a child,
    ``process <queue>``, with the messaging conventions' attributes."""
    with invocation_scope(context.invocation_id, name):
        bootstrap_once()
        try:
            with _span(name, context, "pubsub"), metrics.traced(*_processing(queue, msg)):
                await handler()
        except errors.AppError as error:
            log.warning(
                "%s: message %s attempt %s failed (%s): %s; it will be retried",
                name,
                msg.id,
                msg.dequeue_count,
                error.code,
                error.message,
            )
            raise
        except Exception:
            log.exception("%s: message %s attempt %s failed unexpectedly", name, msg.id, msg.dequeue_count)
            raise


async def run_events(name: str, context: func.Context, events: int, handler: Callable[[], Awaitable[object]]) -> None:
    """One Event Hubs batch; an error is logged and re-raised, so the host does not checkpoint and the
    function's retry policy delivers the batch again (``context.retry_context`` counts the attempts)."""
    with invocation_scope(context.invocation_id, name):
        bootstrap_once()
        retry = context.retry_context
        attempt = f"{retry.retry_count + 1} of {retry.max_retry_count + 1}" if retry is not None else "1"
        try:
            with _span(name, context, "pubsub"):
                await handler()
        except errors.AppError as error:
            log.warning("%s: %d events, attempt %s failed (%s): %s", name, events, attempt, error.code, error.message)
            raise
        except Exception:
            log.exception("%s: %d events, attempt %s failed unexpectedly", name, events, attempt)
            raise


async def after_startup_delay(delay: float) -> None:
    """Wait until the process is ``delay`` seconds old (at once when it is older).

    Timers that run at start (``run_on_startup``, past-due runs) fire with the cold start's first request;
    the renewal timer alone builds the Graph client and makes a dozen Storage calls, all on the one event
    loop, so the request would wait for them. A few seconds later the request is answered and nothing lost.
    """
    remaining = _INDEXED_AT + delay - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)


async def run_timer(name: str, context: func.Context, handler: Callable[[], Awaitable[object]]) -> None:
    """One timer invocation, once the process is past its startup delay; a failure is logged and re-raised
    (the host records it; the next tick tries again)."""
    with invocation_scope(context.invocation_id, name):
        await after_startup_delay(settings().timer_startup_delay_seconds)
        bootstrap_once()
        try:
            with _span(name, context, "timer"):
                await handler()
        except errors.AppError as error:
            log.warning("%s failed (%s): %s; the next run retries", name, error.code, error.message)
            raise
        except Exception:
            log.exception("%s failed unexpectedly", name)
            raise
