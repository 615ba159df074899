"""``python -m devtools.graphsim``: serve the simulator until SIGINT/SIGTERM.

Prints ``graphsim listening on http://HOST:PORT/v1.0`` once it accepts connections
(with the real port when ``--port 0`` asked for a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from devtools.graphsim.app import API_PREFIX, build_app
from devtools.graphsim.config import MESSAGE_PAGING, SimConfig
from devtools.graphsim.simulator import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (sizes and seed shape the tenant; --token pins the bearer token)."""
    parser = argparse.ArgumentParser(prog="python -m devtools.graphsim", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages-per-user", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="base latency of every Graph request")
    parser.add_argument("--token", default=None, help="accept only this bearer token (default: any)")
    parser.add_argument(
        "--message-paging",
        choices=MESSAGE_PAGING,
        default="skip",
        help="nextLinks of message lists carry $skip or $skiptoken",
    )
    parser.add_argument(
        "--eventhub-endpoint",
        default="",
        help="loopback base URL of an Event Hubs stand-in (the local harness: http://127.0.0.1:<port>/_eventhubs) "
        "that EventHub: notification URLs are delivered to",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until a termination signal, then shut down cleanly."""
    config = SimConfig(
        seed=args.seed,
        users=args.users,
        messages_per_user=args.messages_per_user,
        latency_ms=args.latency_ms,
        token=args.token,
        message_paging=args.message_paging,
        eventhub_endpoint=args.eventhub_endpoint,
    )
    runner = web.AppRunner(build_app(Simulator(config)), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"graphsim listening on http://{host}:{port}{API_PREFIX}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    try:
        asyncio.run(serve(parse_args(argv)))
    except OSError as exc:
        print(f"graphsim: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
