"""Call a user function the way the Python worker does, with the host's invocation log lines.

Async functions run on the event loop, sync ones in a thread pool (the worker's model), so one slow
sync function does not stall HTTP or queue polling. Every invocation is tracked so shutdown can wait for
the ones in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.functions import _abc as func_abc

from devtools.funchost.indexing import FunctionInfo

logger = logging.getLogger("funchost")

# The host logs this reason for HTTP calls and for calls through the admin API.
REASON_HOST_API = "This function was programmatically called via the host APIs."


class FunctionTimeoutError(Exception):
    """The invocation ran longer than host.json ``functionTimeout``."""


class _TraceContext(func_abc.TraceContext):
    def __init__(self, trace_parent: str, trace_state: str = "") -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func_abc.RetryContext):
    """Which try this is under the function's retry policy (only the Event Hubs trigger retries here)."""

    def __init__(self, retry_count: int = 0, max_retry_count: int = 0) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The ``context`` argument: ids and directory of the current invocation."""

    _thread_local = threading.local()

    def __init__(
        self,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_parent: str,
        retry: tuple[int, int] = (0, 0),
    ):
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = _TraceContext(trace_parent)
        self._retry_context = _RetryContext(*retry)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # the worker returns an instance
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> _RetryContext:
        return self._retry_context


def _trace_parent(invocation_id: str, incoming: str | None) -> str:
    """A W3C traceparent: the caller's trace continued, or a new one keyed on the invocation id, marked
    sampled (flag 01) as a host with a telemetry sink and no sampling would: the app's spans follow this flag."""
    if incoming:
        return incoming
    return f"00-{uuid.UUID(invocation_id).hex}-{uuid.uuid4().hex[:16]}-01"


class Invoker:
    """Runs invocations, enforces ``functionTimeout`` and keeps the set of those in flight."""

    def __init__(self, *, app_dir: str, function_timeout: float | None, max_workers: int = 32) -> None:
        self._app_dir = app_dir
        self._timeout = function_timeout
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="funchost-worker")
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def invoke(
        self,
        function: FunctionInfo,
        trigger_value: Any,
        *,
        reason: str,
        trace_parent: str | None = None,
        retry: tuple[int, int] = (0, 0),
    ) -> Any:
        """Invoke once; return what the function returned, or raise what it raised (after logging)."""
        task = asyncio.ensure_future(self._run(function, trigger_value, reason, trace_parent, retry))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here: a caller that went away must not leave it unobserved

    async def _run(
        self, function: FunctionInfo, trigger_value: Any, reason: str, trace_parent: str | None, retry: tuple[int, int]
    ) -> Any:
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {function.arg_name: trigger_value}
        if function.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id, function.name, self._app_dir, _trace_parent(invocation_id, trace_parent), retry
            )
        logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
        started = time.perf_counter()
        outcome = "Failed"
        try:
            result = await self._call(function, kwargs)
            outcome = "Succeeded"
            return result
        except FunctionTimeoutError:
            logger.error(
                "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s').",
                _format_timespan(self._timeout or 0),
                function.name,
                invocation_id,
            )
            raise
        except Exception:
            logger.exception("Exception while executing function: Functions.%s (Id=%s)", function.name, invocation_id)
            raise
        finally:
            duration = (time.perf_counter() - started) * 1000
            logger.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", function.name, outcome, invocation_id, duration
            )

    async def _call(self, function: FunctionInfo, kwargs: dict[str, Any]) -> Any:
        call: Callable[[], Any] = functools.partial(function.func, **kwargs)
        if function.is_async:
            awaitable = call()
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            awaitable = loop.run_in_executor(self._executor, ctx.run, call)
        if self._timeout is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, self._timeout)
        except TimeoutError as exc:
            # An async function is cancelled; a sync one cannot be stopped and keeps its thread.
            raise FunctionTimeoutError(function.name) from exc

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for invocations in flight; cancel the rest, return how many."""
        pending = set(self._in_flight)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
        return len(still)

    def close(self) -> None:
        """Release the worker threads (a sync function still running keeps its thread until it returns)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _format_timespan(seconds: float) -> str:
    """``hh:mm:ss`` (with ``.fff`` when fractional), as the host prints TimeSpans."""
    whole, millis = int(seconds), round((seconds - int(seconds)) * 1000)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{text}.{millis:03d}" if millis else text
