"""Queue-triggered invocations: log correlation and one log line per outcome; failures propagate.

A raised exception is how a queue trigger asks the host for redelivery (then ``<queue>-poison`` after
``maxDequeueCount``), so errors are logged here without secrets and re-raised, never swallowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import azure.functions as func

from shared.errors import AppError
from shared.http import configure_logging_once
from shared.telemetry import get_logger, invocation_scope

log = get_logger("queue")


async def run_queue(
    name: str, context: func.Context, msg: func.QueueMessage, handler: Callable[[], Awaitable[object]]
) -> None:
    """Run one queue invocation's handler; an error is logged (code and message only) and re-raised."""
    with invocation_scope(context.invocation_id, name):
        configure_logging_once()
        try:
            await handler()
        except AppError as error:
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
