"""A webhook receiver for simulator tests: answers Graph's validation handshake and records
notifications, on its own thread and event loop so a test blocked in a synchronous
``SimControl`` call (e.g. waiting for deliveries) cannot starve it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web


class Receiver:
    """Serves POST /{any path}; behaviour is set by the test through plain attributes.

    ``validation``: "echo" (correct), "wrong" (other text), "json" (right text, wrong type),
    "error" (500) or "slow" (sleeps ``delay_s``). ``status``/``delay_s`` shape answers to
    notifications.
    """

    def __init__(self) -> None:
        self.validation = "echo"
        self.status = 202
        self.delay_s = 0.0
        self.payloads: list[tuple[str, dict[str, Any]]] = []  # (path, body) per notification POST
        self.validation_tokens: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="graphsim-receiver", daemon=True)

    def url(self, path: str = "/notify") -> str:
        """The URL to give Graph (``http://127.0.0.1:PORT/path``)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        """Start serving; returns once the port is bound."""
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("receiver did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            with self._lock:
                self.validation_tokens.append(token)
            mode = self.validation
            if mode == "slow":
                await asyncio.sleep(self.delay_s)
            if mode == "wrong":
                return web.Response(text="not the token", content_type="text/plain")
            if mode == "json":
                return web.Response(text=json.dumps(token), content_type="application/json")
            if mode == "error":
                return web.Response(status=500)
            return web.Response(text=token, content_type="text/plain")
        body = await request.json()
        with self._lock:
            self.payloads.append((request.path, body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status)

    def items(self, path: str = "/notify") -> list[dict[str, Any]]:
        """Every ``value[]`` item received on ``path``, in arrival order."""
        with self._lock:
            return [item for p, body in self.payloads if p == path for item in body["value"]]

    def posts(self, path: str = "/notify") -> list[dict[str, Any]]:
        """The notification POST bodies received on ``path``."""
        with self._lock:
            return [body for p, body in self.payloads if p == path]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Poll until ``predicate()`` holds (the receiver runs on its own thread)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the receiver")
            time.sleep(0.02)
