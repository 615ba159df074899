"""Timer triggers: NCRONTAB or TimeSpan schedules, one run at a time, ``past_due`` when late.

Rules (the host's, as far as one process can keep them):
- a six-field expression puts seconds first (``{second} {minute} {hour} {day} {month} {day-of-week}``);
  a five-field one is read as classic cron (minute first); ``hh:mm:ss`` is a fixed interval;
- times are UTC (the host's default when no time zone setting is given);
- a timer never runs twice at once: an occurrence that comes while a run is going waits for it and then
  runs once with ``past_due=True``; the other occurrences that passed meanwhile are folded into that run
  (runs are never stacked);
- ``run_on_startup`` runs the function once when the harness starts;
- schedule monitor: with ``FUNCHOST_STATE_DIR`` set, the last/next occurrence is kept in
  ``<dir>/timers/<function>.json`` (the host keeps it in a blob), so an occurrence missed while the
  harness was down runs once at start with ``past_due=True``. Without it the status lives in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from croniter import croniter

from devtools.funchost.bindings import decode_timer_request, timer_datum
from devtools.funchost.config import ConfigError, parse_timespan
from devtools.funchost.indexing import FunctionInfo
from devtools.funchost.invoke import REASON_HOST_API, Invoker

logger = logging.getLogger("funchost")

# A run that starts later than its occurrence by more than this is past due.
PAST_DUE_TOLERANCE = 1.0
_TIMESPAN_SCHEDULE = re.compile(r"^(\d+\.)?\d{1,2}:\d{1,2}(:\d{1,2})?$")


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    @property
    def interval_hint(self) -> timedelta: ...


@dataclass(frozen=True)
class CronSchedule:
    expression: str

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(self.expression, second_at_beginning=len(fields) == 6):
            raise ConfigError(f"invalid NCRONTAB expression {self.expression!r}")

    @property
    def _with_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def next_after(self, moment: datetime) -> datetime:
        it = croniter(self.expression, moment, second_at_beginning=self._with_seconds)
        nxt: datetime = it.get_next(datetime)
        return nxt

    @property
    def interval_hint(self) -> timedelta:
        """The gap between two occurrences from a fixed origin (decides the monitor default)."""
        origin = datetime(2001, 1, 1, tzinfo=UTC)
        first = self.next_after(origin)
        return self.next_after(first) - first


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    @property
    def interval_hint(self) -> timedelta:
        return self.interval


def parse_schedule(expression: str) -> Schedule:
    """A TimeSpan (``hh:mm:ss``) or NCRONTAB schedule; ConfigError if neither."""
    text = expression.strip()
    if _TIMESPAN_SCHEDULE.match(text):
        seconds = parse_timespan(text)
        if seconds <= 0:
            raise ConfigError(f"timer interval must be positive: {expression!r}")
        return IntervalSchedule(timedelta(seconds=seconds))
    return CronSchedule(text)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else datetime.min.replace(tzinfo=UTC).isoformat()


class ScheduleMonitor:
    """Last/next occurrence per timer in JSON files, so a restart can tell a missed occurrence."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory / "timers"

    def _path(self, name: str) -> Path:
        return self._dir / f"{name}.json"

    def load(self, name: str) -> dict[str, datetime] | None:
        try:
            raw = json.loads(self._path(name).read_text(encoding="utf-8"))
            return {key: datetime.fromisoformat(raw[key]) for key in ("Last", "Next", "LastUpdated")}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, name: str, last: datetime, nxt: datetime) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        data = {"Last": _iso(last), "Next": _iso(nxt), "LastUpdated": _iso(datetime.now(UTC))}
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self._path(name))


class TimerRunner:
    """Schedules one timer function until ``stop``."""

    def __init__(
        self,
        function: FunctionInfo,
        *,
        schedule: Schedule,
        invoker: Invoker,
        monitor: ScheduleMonitor | None = None,
        past_due_tolerance: float = PAST_DUE_TOLERANCE,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self._invoker = invoker
        use_monitor = function.use_monitor
        if use_monitor is None:  # the host's default: monitor schedules of a minute or more
            use_monitor = schedule.interval_hint >= timedelta(minutes=1)
        self._monitor = monitor if use_monitor else None
        self._tolerance = timedelta(seconds=past_due_tolerance)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._extra: set[asyncio.Task[None]] = set()
        self._last: datetime | None = None
        self._started = False

    def start(self) -> None:
        """Start scheduling (again, after ``request_stop``: a run still in progress finishes first)."""
        if self._task is not None and not self._task.done():
            self._extra.add(self._task)
            self._task.add_done_callback(self._extra.discard)
        self._stopping = asyncio.Event()
        first, self._started = not self._started, True
        self._task = asyncio.create_task(self._loop(self._stopping, first), name=f"funchost-timer-{self.function.name}")

    async def stop(self, timeout: float) -> None:
        """Stop scheduling; let a run in progress finish within ``timeout`` (then it is cancelled)."""
        self.request_stop()
        tasks = [t for t in (self._task, *self._extra) if t is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def request_stop(self) -> None:
        """Schedule no further runs (``stop`` then waits for a run in progress)."""
        self._stopping.set()

    def fire(self, reason: str = REASON_HOST_API) -> None:
        """Run now (admin API), after any run in progress: never concurrently with a scheduled run."""
        task = asyncio.create_task(self._fire_manual(reason))
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)

    async def _fire_manual(self, reason: str) -> None:
        await self._fire(datetime.now(UTC), reason=reason, manual=True)

    @staticmethod
    async def _sleep_until(moment: datetime, stopping: asyncio.Event) -> None:
        delay = (moment - datetime.now(UTC)).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)

    async def _loop(self, stopping: asyncio.Event, first: bool = True) -> None:
        """Schedule until ``stopping``; ``run_on_startup`` runs on the first start only (a restart after the
        singleton lock came back is not a start of the host)."""
        now = datetime.now(UTC)
        status = self._monitor.load(self.function.name) if self._monitor else None
        if status is not None:
            self._last = status["Last"]
        base = now
        if status is not None and status["Next"] + self._tolerance < now:
            started = await self._fire(status["Next"], reason=f"Timer fired at {_iso(now)}")
            base = started
        elif self.function.run_on_startup and first:
            await self._fire(now, reason=f"Timer fired at {_iso(now)}")
        due = self.schedule.next_after(base)
        while not stopping.is_set():
            await self._sleep_until(due, stopping)
            if stopping.is_set():
                break
            started = await self._fire(due, reason=f"Timer fired at {_iso(datetime.now(UTC))}")
            # A late run absorbs every occurrence up to its start; an on-time one absorbs none, so an
            # occurrence that came during it runs next (at once, past due).
            base = started if started - due > self._tolerance else due
            due = self.schedule.next_after(base)

    async def _fire(self, scheduled: datetime, *, reason: str, manual: bool = False) -> datetime:
        """Run once under the timer's lock; return when the run started."""
        async with self._lock:
            started = datetime.now(UTC)
            past_due = not manual and started - scheduled > self._tolerance
            upcoming = self.schedule.next_after(max(started, scheduled))
            request = decode_timer_request(
                timer_datum(
                    past_due=past_due,
                    schedule_status={"Last": _iso(self._last), "Next": _iso(upcoming), "LastUpdated": _iso(started)},
                    schedule={"AdjustForDST": True},
                )
            )
            with contextlib.suppress(Exception):  # logged by the invoker; a timer just waits for next time
                await self._invoker.invoke(self.function, request, reason=reason)
            self._last = scheduled
            if self._monitor is not None and not manual:
                self._monitor.save(self.function.name, scheduled, self.schedule.next_after(scheduled))
            return started


def describe(function: FunctionInfo, schedule: Schedule) -> dict[str, Any]:
    """The timer's schedule for the admin listing."""
    return {"schedule": function.schedule, "next": _iso(schedule.next_after(datetime.now(UTC)))}
