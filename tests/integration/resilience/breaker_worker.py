"""One app instance for ``test_breaker_processes``: an OS process of its own with its own table client and
breaker registry, hammering one shared breaker and appending what happens to a JSON-lines file.

Run as ``python -m tests.integration.resilience.breaker_worker CONFIG_JSON``. It writes ``ready``, waits for
a line on stdin, then runs ``callers`` concurrent callers that retry every ``pause`` seconds while refused
(``refused`` events) until one of its calls succeeds or ``deadline`` seconds pass (``exit`` event). Each
admitted call writes ``start`` and ``end``; a call admitted while no call anywhere has ended yet is a
half-open probe (``slow``): it sleeps ``probe_seconds``. Times: ``t`` is the breaker's service clock,
``wall`` this machine's ``time.time()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from azure.data.tables.aio import TableClient

from shared.errors import CircuitOpenError
from shared.resilience import BreakerPolicy, BreakerRegistry, TableBreakerStore


class Events:
    """Appends JSON lines with one ``write`` each (O_APPEND), so the lines of two processes never interleave."""

    def __init__(self, path: Path, name: str, clock: TableBreakerStore) -> None:
        self.path = path
        self._name = name
        self._clock = clock
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, event: str, **fields: Any) -> None:
        line = {"event": event, "process": self._name, "t": self._clock.now(), "wall": time.time(), **fields}
        os.write(self._fd, (json.dumps(line) + "\n").encode())

    def any_ended(self) -> bool:
        return '"event": "end"' in self.path.read_text()


async def run(config: dict[str, Any]) -> int:
    policy = BreakerPolicy(
        probe_lease_seconds=config["lease"],
        probe_timeout_seconds=120.0,
        state_cache_seconds=0.1,
        flush_interval_seconds=0.2,
        storage_outage="fail_closed",  # an unreachable store refuses: no call may bypass the shared breaker
    )
    async with TableClient.from_connection_string(config["connection"], config["table"], retry_total=0) as client:
        store = TableBreakerStore(client, timeout=policy.storage_timeout_seconds)
        breaker = BreakerRegistry(store, policy, instance_id=config["name"]).get(config["key"])
        events = Events(Path(config["events"]), config["name"], store)
        events.write("ready", pid=os.getpid())
        await asyncio.to_thread(sys.stdin.readline)  # the test's "go"
        done = asyncio.Event()
        deadline = time.monotonic() + config["deadline"]

        async def call() -> None:
            slow = not events.any_ended()
            events.write("start", slow=slow)
            if slow:
                await asyncio.sleep(config["probe_seconds"])
            events.write("end", slow=slow)

        async def caller(number: int) -> None:
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    await breaker.call(call)
                except CircuitOpenError as refused:
                    events.write("refused", caller=number, retry_after=refused.retry_after)
                    await asyncio.sleep(config["pause"])
                else:
                    done.set()

        await asyncio.gather(*(caller(n) for n in range(config["callers"])))
        events.write("exit", done=done.is_set())
        return 0 if done.is_set() else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(run(json.loads(sys.argv[1]))))
