"""``FuncHost``: index an app, serve its HTTP routes, run its queue listeners and timers; start/stop.

Usable in-process (tests run it inside the pytest loop) and from the CLI (``__main__``). A function the
harness cannot set up (a missing setting, an unsupported binding, a bad schedule) is reported in error
and the others keep running, as the host does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from devtools.funchost.bindings import decode_queue_message, queue_body_datum, queue_trigger_metadata
from devtools.funchost.config import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    SHUTDOWN_TIMEOUT_SETTING,
    ConfigError,
    HostConfig,
    HostKeys,
    eventhub_namespace,
    float_setting,
    host_id,
    is_disabled,
    queue_receive_lease,
    request_body_limit,
    resolve_expression,
    state_dir,
    storage_connection,
    with_setting_overrides,
)
from devtools.funchost.eventhubs import EventHubListener, EventHubStandIn, RetryPolicy
from devtools.funchost.http import HttpFrontend, build_routes
from devtools.funchost.indexing import (
    EVENTHUB_TRIGGER,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionInfo,
    FunctionSource,
    index,
)
from devtools.funchost.invoke import REASON_HOST_API, Invoker
from devtools.funchost.queues import QueueListener
from devtools.funchost.singleton import LOCK_CONTAINER, ListenerLock, blob_service, lock_blob_name
from devtools.funchost.timers import ScheduleMonitor, TimerRunner, describe, parse_schedule

logger = logging.getLogger("funchost")


class FuncHost:
    """One harness instance. ``await start()`` then use ``base_url``; ``await stop()`` at the end.

    ``env`` is where settings are read (connection strings, ``%NAME%`` expressions, keys); it defaults
    to ``os.environ``. ``host_json`` is the parsed host.json (``load_host_json(app_dir)``); None means
    all host defaults. ``port=0`` picks a free port. ``on_stop`` is the app's close hook: ``stop()``
    awaits it once, on the loop the invocations ran on, after the last invocation has finished.
    """

    def __init__(
        self,
        app: FunctionSource,
        *,
        app_dir: Path | str = ".",
        host_json: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.config = HostConfig.from_json(with_setting_overrides(host_json or {}, self.env))
        self.host_id = host_id(self.env, self.app_dir)
        self.keys = HostKeys.from_env(self.env)
        self.host = host
        self.port = port
        self.max_body = request_body_limit(self.env)
        self.shutdown_timeout = float_setting(self.env, SHUTDOWN_TIMEOUT_SETTING, DEFAULT_SHUTDOWN_TIMEOUT)
        self.functions: dict[str, FunctionInfo] = {}
        self.errors: dict[str, str] = {}
        self.state = "Default"
        self._id = uuid.uuid4().hex[:16]
        self._started_at = time.monotonic()
        self._app = app
        self._invoker = Invoker(app_dir=str(self.app_dir), function_timeout=self.config.function_timeout)
        self._queues: list[QueueListener] = []
        self._hub_listeners: list[EventHubListener] = []
        self.eventhubs = EventHubStandIn()  # the namespaces Event Hubs triggers read (docs/eventhubs.md)
        self._timers: dict[str, TimerRunner] = {}
        self._locks: list[ListenerLock] = []
        self._blobs: tuple[Any, Any] | None = None  # (BlobServiceClient, credential) of the timers' locks
        self._manual: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._on_stop = on_stop

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Index, open the HTTP port, start queue listeners and timers; state becomes Running."""
        self.state = "Initialized"
        for function in index(self._app, self.errors):
            if is_disabled(function.name, self.env):
                logger.info("Function '%s' is disabled by app setting", function.name)
                continue
            self.functions[function.name] = function
        routes = build_routes(list(self.functions.values()), self.config.route_prefix, self.errors)
        for name in self.errors:
            self.functions.pop(name, None)
        frontend = HttpFrontend(
            routes=routes,
            keys=self.keys,
            invoker=self._invoker,
            admin=self,
            max_body=self.max_body,
            extra_routes=self.eventhubs.routes(),
        )
        self._runner = web.AppRunner(frontend.application(), access_log=None, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._bound_port()
        for function in list(self.functions.values()):
            try:
                if function.trigger_type == QUEUE_TRIGGER:
                    await self._start_queue(function)
                elif function.trigger_type == TIMER_TRIGGER:
                    await self._start_timer(function)
                elif function.trigger_type == EVENTHUB_TRIGGER:
                    self._start_eventhub(function)
            except (ConfigError, ValueError) as exc:
                self._in_error(function, str(exc))
            except Exception as exc:  # e.g. storage unreachable: the function is in error, the rest runs
                self._in_error(function, f"{type(exc).__name__}: {exc}")
        for route in routes:
            logger.info(
                "%s: [%s] %s/%s",
                route.function.name,
                ",".join(route.function.methods),
                self.base_url,
                "/".join(p for p in (self.config.route_prefix, route.function.route) if p),
            )
        self.state = "Running"
        logger.info("Host started with %d functions (%d in error)", len(self.functions), len(self.errors))

    async def stop(self) -> None:
        """Stop polling and scheduling, let invocations in flight finish (bounded), close everything."""
        if self.state == "Stopped":
            return
        self.state = "Stopping"
        deadline = time.monotonic() + self.shutdown_timeout

        def remaining() -> float:
            return max(deadline - time.monotonic(), 0.1)

        for queue in self._queues:
            queue.request_stop()
        for timer in self._timers.values():
            timer.request_stop()
        for lock in self._locks:
            lock.request_stop()
        for hub in self._hub_listeners:
            hub.request_stop()
        await asyncio.gather(
            *(q.stop(remaining()) for q in self._queues),
            *(t.stop(remaining()) for t in self._timers.values()),
            *(h.stop(remaining()) for h in self._hub_listeners),
        )
        await self._release_locks(remaining())
        if self._runner is not None:
            await self._runner.cleanup()
        left = await self._invoker.drain(remaining())
        if left:
            logger.warning("%d invocations did not finish within the shutdown timeout and were cancelled", left)
        await self._run_close_hook(remaining())
        self._invoker.close()
        self.state = "Stopped"

    async def _run_close_hook(self, timeout: float) -> None:
        """The app's close hook (its clients), bounded by what is left of the shutdown timeout."""
        if self._on_stop is None:
            return
        try:
            await asyncio.wait_for(self._on_stop(), timeout)
        except TimeoutError:
            logger.warning("The app's close hook did not finish within the shutdown timeout")
        except Exception:
            logger.exception("The app's close hook failed")

    async def __aenter__(self) -> FuncHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _bound_port(self) -> int:
        assert self._runner is not None
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("the HTTP site has no bound port")

    def _in_error(self, function: FunctionInfo, message: str) -> None:
        logger.error("The '%s' function is in error: %s", function.name, message)
        self.errors[function.name] = message
        self.functions.pop(function.name, None)

    async def _start_queue(self, function: FunctionInfo) -> None:
        queue_name = resolve_expression(function.queue_name, self.env).lower()
        listener = QueueListener(
            function,
            queue_name=queue_name,
            connection=storage_connection(function.connection, self.env),
            options=self.config.queues,
            invoker=self._invoker,
            receive_lease=queue_receive_lease(self.env),
        )
        await listener.start()
        self._queues.append(listener)

    def _start_eventhub(self, function: FunctionInfo) -> None:
        if function.cardinality != "many":
            raise ConfigError("funchost runs Event Hubs triggers with cardinality 'many' only")
        namespace = eventhub_namespace(function.connection, self.env)
        hub = self.eventhubs.hub(namespace, resolve_expression(function.event_hub_name, self.env))
        listener = EventHubListener(
            function,
            hub,
            self._invoker,
            namespace=namespace,
            max_batch=self.config.eventhub_max_batch,
            retry=RetryPolicy.of(function.retry),
        )
        listener.start()
        self._hub_listeners.append(listener)

    async def _start_timer(self, function: FunctionInfo) -> None:
        """Schedule the timer while this instance holds its singleton lock (docs/local-harness.md); without
        storage settings there is no lock and it runs here regardless."""
        schedule = parse_schedule(resolve_expression(function.schedule, self.env))
        directory = state_dir(self.env)
        runner = TimerRunner(
            function,
            schedule=schedule,
            invoker=self._invoker,
            monitor=ScheduleMonitor(directory) if directory else None,
        )
        self._timers[function.name] = runner
        if self._blobs is None:
            self._blobs = blob_service(self.env) or (None, None)
        service = self._blobs[0]
        if service is None:
            logger.warning("Timer '%s' runs without a singleton lock: AzureWebJobsStorage is not set", function.name)
            runner.start()
            return
        options = self.config.singleton
        lock = ListenerLock(
            service.get_container_client(LOCK_CONTAINER),
            lock_blob_name(self.host_id, function.name),
            period=options.listener_lock_period,
            recovery_interval=options.listener_lock_recovery_polling_interval,
            on_acquired=runner.start,
            on_lost=runner.request_stop,
        )
        lock.start()
        self._locks.append(lock)

    async def _release_locks(self, timeout: float) -> None:
        await asyncio.gather(*(lock.stop(timeout) for lock in self._locks))
        service, credential = self._blobs or (None, None)
        if service is not None:
            await service.close()
        if credential is not None:
            await credential.close()

    # Admin API (used by the HTTP front end) ----------------------------------------------------
    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self._id,
            "state": self.state,
            "version": "funchost",
            "processUptime": int((time.monotonic() - self._started_at) * 1000),
        }
        if self.errors:
            body["errors"] = [f"{name}: {message}" for name, message in sorted(self.errors.items())]
        return body

    def function_list(self) -> list[dict[str, Any]]:
        listing = []
        for function in self.functions.values():
            item: dict[str, Any] = {"name": function.name, "trigger": function.trigger_type}
            if function.trigger_type == HTTP_TRIGGER:
                item.update(route=function.route, methods=list(function.methods), authLevel=function.auth_level)
            elif function.trigger_type == TIMER_TRIGGER and function.name in self._timers:
                item.update(describe(function, self._timers[function.name].schedule))
            elif function.trigger_type == QUEUE_TRIGGER:
                item.update(queueName=function.queue_name)
            elif function.trigger_type == EVENTHUB_TRIGGER:
                item.update(eventHubName=function.event_hub_name)
            listing.append(item)
        return listing

    def run_non_http(self, name: str, data: str) -> None:
        """Start a timer or queue function as the host's admin API does (the HTTP call returns 202)."""
        function = self.functions[name]
        if function.trigger_type == HTTP_TRIGGER:
            raise ValueError(f"{name} is HTTP-triggered: call its route")
        if function.trigger_type == TIMER_TRIGGER:
            self._timers[name].fire()
            return
        if function.trigger_type == EVENTHUB_TRIGGER:  # the host sends the input as one event
            (listener,) = [h for h in self._hub_listeners if h.function.name == name]
            listener.hub.send(data.encode("utf-8"))
            return
        metadata = queue_trigger_metadata(
            message_id=str(uuid.uuid4()),
            dequeue_count=1,
            insertion_time=datetime.now(UTC),
            expiration_time=None,
            next_visible_time=None,
            pop_receipt=None,
        )
        message = decode_queue_message(queue_body_datum(data.encode("utf-8")), metadata)
        task = asyncio.create_task(self._invoke_quietly(function, message))
        self._manual.add(task)
        task.add_done_callback(self._manual.discard)

    async def _invoke_quietly(self, function: FunctionInfo, value: Any) -> None:
        try:
            await self._invoker.invoke(function, value, reason=REASON_HOST_API)
        except Exception:  # logged by the invoker; nobody waits for the result
            return
