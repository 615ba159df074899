"""The users API's request loop, shared by the API and mirror benchmarks: one in-process handler call
(``shared.api.views.get_user`` with a real ``azure.functions.HttpRequest``, as the trigger calls it), timings
per cache tier, a Zipf draw of users and a bounded-concurrency workload runner."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import azure.functions as func

from bench._stack import Stack, median, percentile, verdict
from shared.api import views
from shared.directory import USER_FIELDS
from shared.wiring import DIRECTORY, GRAPH, registry, settings

T = TypeVar("T")

USERS = 1000
ZIPF_S = 1.1
SEED = 7
CONCURRENCY = 16  # in-flight handler calls during the Zipf workloads


def user_request(user_id: str) -> func.HttpRequest:
    """What the host would pass for ``GET /api/users/{user_id}``."""
    return func.HttpRequest(
        "GET",
        f"http://127.0.0.1/api/users/{user_id}",
        headers={},
        params={},
        route_params={"user_id": user_id},
        body=b"",
    )


async def timed_get_user(user_id: str) -> tuple[float, str]:
    """One handler call: its duration in seconds and its ``X-Cache`` header."""
    request = user_request(user_id)
    started = time.perf_counter()
    # As the trigger calls it (triggers/users_api.py): the directory from the registry, passed in.
    response = await views.get_user(request, await registry.get(DIRECTORY), settings().cache_user_ttl_seconds)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET users/{user_id} answered {response.status_code}: {response.get_body()[:200]!r}")
    return elapsed, response.headers.get("X-Cache", "?")


async def closing_registry(work: Awaitable[T]) -> T:
    """Run ``work``, then close the registry's clients on this event loop (the next stack gets new ones)."""
    try:
        return await work
    finally:
        await registry.reset()


async def fresh_process(env: dict[str, str]) -> None:
    """Apply ``env`` and drop every singleton: the next call builds clients as a new worker process would."""
    os.environ.update(env)
    await registry.reset()


@dataclass
class Timings:
    """Durations (seconds) of the calls answered from the tier asked for, and every ``X-Cache`` seen."""

    durations: list[float] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def row(self, name: str, target_ms: float | None) -> str:
        ms = [d * 1000 for d in self.durations]
        med, p99 = median(ms), percentile(ms, 99)
        target = f"≤ {target_ms:g} ms: {verdict(med <= target_ms)}" if target_ms is not None else "—"
        return f"| {name} | {len(ms):,} | {med:.2f} | {p99:.2f} | {target} |"


async def timed_tier(user_ids: Sequence[str], tier: str) -> Timings:
    """One call per user, keeping the durations of the calls ``tier`` answered."""
    result = Timings()
    for user_id in user_ids:
        elapsed, source = await timed_get_user(user_id)
        result.sources[source] += 1
        if source == tier:
            result.durations.append(elapsed)
    return result


async def l1_hit_timings(user_ids: Sequence[str], count: int) -> Timings:
    """L1-hit path timing: ``count`` handler calls cycling over ``user_ids`` (each warmed into L1 first).

    Keeps the durations of the calls answered ``hit-l1`` (an entry whose 1 s L1 lifetime ran out is
    answered from L2 once and only counted in ``sources``). The registry must be wired already; reuse
    this for comparisons of the hot path (e.g. telemetry on/off).
    """
    for user_id in user_ids:
        await timed_get_user(user_id)
    result = Timings()
    for user_id in itertools.islice(itertools.cycle(user_ids), count):
        elapsed, source = await timed_get_user(user_id)
        result.sources[source] += 1
        if source == "hit-l1":
            result.durations.append(elapsed)
    return result


def zipf_sequence(user_ids: Sequence[str], count: int, s: float = ZIPF_S, seed: int = SEED) -> list[str]:
    """``count`` user ids drawn with Zipf(``s``) popularity; which user has which rank is shuffled."""
    rng = random.Random(seed)
    ranked = list(user_ids)
    rng.shuffle(ranked)
    cumulative = list(itertools.accumulate(1 / (k**s) for k in range(1, len(ranked) + 1)))
    total = cumulative[-1]
    return [ranked[min(bisect.bisect_left(cumulative, rng.random() * total), len(ranked) - 1)] for _ in range(count)]


@dataclass
class Workload:
    """How a request loop went: requests done, wall time, ``X-Cache`` mix (empty without the cache)."""

    done: int
    seconds: float
    sources: Counter[str]


async def run_workload(
    sequence: Sequence[str], call: Callable[[str], Awaitable[str | None]], concurrency: int, max_seconds: float
) -> Workload:
    """Run ``call`` over ``sequence`` in order with ``concurrency`` workers; stops early at ``max_seconds``."""
    items: Iterator[str] = iter(sequence)
    sources: Counter[str] = Counter()
    done = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal done
        for user_id in items:
            source = await call(user_id)
            done += 1
            if source is not None:
                sources[source] += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Workload(done, time.perf_counter() - started, sources)


async def through_handler(user_id: str) -> str:
    return (await timed_get_user(user_id))[1]


async def gateway_only(user_id: str) -> None:
    """The same read with no cache: straight to the resilient Graph gateway."""
    await (await registry.get(GRAPH)).get_user(user_id, select=list(USER_FIELDS))


def graph_calls(stack: Stack) -> int:
    return int(stack.sim.stats()["total"])
