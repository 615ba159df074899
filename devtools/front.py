"""A tiny round-robin HTTP front for several harness instances of one app (scale-out tests and benchmarks).

Each request goes to the next instance in turn, as a load balancer in front of scaled-out Functions
instances spreads webhook POSTs and API calls. An instance that refuses the connection (stopped or killed)
is skipped for that request and the next one is tried; a request an instance accepted is never sent
twice (a connection lost mid-way is answered 502, a 5xx is passed through), so the sender's own retry
decides, as with Graph's redelivery. ``GET /_front/stats`` tells how many requests each instance answered.

    python -m devtools.front --port 7070 http://127.0.0.1:7071 http://127.0.0.1:7072
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
from collections import Counter

import aiohttp
from aiohttp import web

# Headers that describe one connection, not the message (RFC 9110 7.6.1), plus those aiohttp sets itself.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Host", "Content-Length",
    )
)  # fmt: skip
STATS_PATH = "/_front/stats"
READY_PREFIX = "front listening on "


class RoundRobinFront:
    """Serves on ``host:port`` and forwards every request to ``backends`` in turn."""

    def __init__(self, backends: list[str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not backends:
            raise ValueError("the front needs at least one backend")
        self.backends = [b.rstrip("/") for b in backends]
        self.host = host
        self.port = port
        self.answered: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self._turn = itertools.cycle(range(len(self.backends)))
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120), auto_decompress=False, connector=aiohttp.TCPConnector(limit=0)
        )
        app = web.Application(client_max_size=0)
        app.router.add_get(STATS_PATH, self._stats)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = next(a[1] for a in self._runner.addresses if isinstance(a, tuple))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response({"answered": dict(self.answered), "skipped": dict(self.skipped)})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for _ in self.backends:
            backend = self.backends[next(self._turn)]
            try:
                async with self._session.request(
                    request.method, backend + request.path_qs, headers=headers, data=body, allow_redirects=False
                ) as answer:
                    content = await answer.read()
                    self.answered[backend] += 1
                    kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                    return web.Response(status=answer.status, headers=kept, body=content)
            except aiohttp.ClientConnectorError:
                self.skipped[backend] += 1  # nothing listens there: the next instance takes this request
            except aiohttp.ClientError:
                break  # the instance took the request and failed mid-way: answer as a load balancer would
        return web.Response(status=502, text="no instance answered")


async def _serve(front: RoundRobinFront) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await front.start()
    print(f"{READY_PREFIX}{front.base_url}", flush=True)
    await stop.wait()
    await front.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.front", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("backends", nargs="+", help="base URLs of the instances, e.g. http://127.0.0.1:7071")
    args = parser.parse_args(argv)
    asyncio.run(_serve(RoundRobinFront(args.backends, host=args.host, port=args.port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
