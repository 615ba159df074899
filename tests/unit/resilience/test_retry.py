"""Retry policy: what is retried, how long it waits, when it gives up, and Retry-After parsing."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import (
    AccessDeniedError,
    CircuitOpenError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
    UnavailableError,
)
from shared.resilience.retry import RetryPolicy, call_with_retry, is_testing, parse_retry_after, set_testing

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(name="testing", autouse=True)
def _testing() -> Iterator[None]:
    """Waits are computed and reported but not slept."""
    set_testing(True)
    yield
    set_testing(False)


class Script:
    """An async callable that raises the given errors in turn, then returns "done"; records waits."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.waits: list[tuple[int, float]] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    def on_retry(self, error: TransientError, attempt: int, wait: float) -> None:
        self.waits.append((attempt, wait))


def throttled(retry_after: float | None = None) -> ThrottledError:
    return ThrottledError("429", status=429, retry_after=retry_after)


async def run(script: Script, policy: RetryPolicy) -> str:
    return await call_with_retry(script, policy, on_retry=script.on_retry)


async def test_retry_after_is_honoured_as_the_wait() -> None:
    """A 429 with Retry-After: 2 is retried after exactly 2 s."""
    script = Script(throttled(2.0))
    assert await run(script, RetryPolicy()) == "done"
    assert script.waits == [(1, 2.0)]


async def test_unavailable_without_hint_is_retried_with_backoff() -> None:
    """503/timeouts without a hint are retried after a jittered backoff."""
    script = Script(UnavailableError("503", status=503), UnavailableError("timeout"))
    assert await run(script, RetryPolicy(max_attempts=3)) == "done"
    assert [attempt for attempt, _ in script.waits] == [1, 2]


async def test_retry_after_beyond_the_budget_reraises_at_once() -> None:
    """A Retry-After longer than the remaining budget is not slept: the error (and its hint) goes up now."""
    error = throttled(30.0)
    script = Script(error)
    with pytest.raises(ThrottledError) as raised:
        await run(script, RetryPolicy(budget_seconds=20.0, max_retry_after_seconds=60.0))
    assert raised.value is error
    assert raised.value.retry_after == 30.0
    assert (script.calls, script.waits) == (1, [])


async def test_retry_after_beyond_the_budget_reraises_even_when_the_cap_would_fit() -> None:
    """The server's own hint decides: retrying after our 10 s cap when it asked for 30 s would only earn a 429."""
    script = Script(throttled(30.0))
    with pytest.raises(ThrottledError):
        await run(script, RetryPolicy(budget_seconds=20.0, max_retry_after_seconds=10.0))
    assert script.calls == 1


async def test_waits_already_spent_count_against_the_budget() -> None:
    """Two 3 s hints do not fit in a 5 s budget: the second error is raised without waiting."""
    script = Script(throttled(3.0), throttled(3.0))
    with pytest.raises(ThrottledError):
        await run(script, RetryPolicy(budget_seconds=5.0, max_attempts=5))
    assert (script.calls, script.waits) == (2, [(1, 3.0)])


async def test_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    """A hint longer than ``max_retry_after_seconds`` ends the call at once, with the hint passed up: waiting
    less than asked would only earn another 429."""
    script = Script(throttled(500.0))
    with pytest.raises(ThrottledError) as caught:
        await run(script, RetryPolicy(budget_seconds=1000.0, max_retry_after_seconds=10.0))
    assert (script.calls, script.waits) == (1, [])
    assert caught.value.retry_after == 500.0


async def test_retry_after_within_the_cap_is_waited_for_exactly() -> None:
    """A hint inside the cap and the budget is honoured as given."""
    script = Script(throttled(7.0))
    await run(script, RetryPolicy(budget_seconds=100.0, max_retry_after_seconds=10.0))
    assert script.waits == [(1, 7.0)]


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("400", status=400),
        AccessDeniedError("401", status=401),
        AccessDeniedError("403", status=403),
        NotFoundError("404", status=404),
        InvalidInputError("bad id"),
        CircuitOpenError("graph", retry_after=5.0),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status", "") or ""),
)
async def test_non_transient_errors_and_open_circuits_are_never_retried(error: Exception) -> None:
    """Permanent errors, invalid input, an open breaker and unknown exceptions fail on the first attempt."""
    script = Script(error)
    with pytest.raises(type(error)) as raised:
        await run(script, RetryPolicy(max_attempts=5))
    assert raised.value is error
    assert script.calls == 1


async def test_attempts_are_bounded_and_the_last_error_is_raised_as_is() -> None:
    """After ``max_attempts`` the last attempt's own error is raised (not a tenacity RetryError)."""
    errors = [UnavailableError(f"503 #{n}", status=503) for n in range(5)]
    script = Script(*errors)
    with pytest.raises(UnavailableError) as raised:
        await run(script, RetryPolicy(max_attempts=3))
    assert raised.value is errors[2]
    assert script.calls == 3


async def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    """Backoff waits are drawn from [0, min(cap, base * 2^(attempt-1))] and actually vary."""
    policy = RetryPolicy(max_attempts=5, budget_seconds=1e6, backoff_base_seconds=1.0, backoff_cap_seconds=3.0)
    seen: dict[int, list[float]] = {1: [], 2: [], 3: [], 4: []}
    for _ in range(200):
        script = Script(*(UnavailableError("503") for _ in range(4)))
        await run(script, policy)
        for attempt, wait in script.waits:
            seen[attempt].append(wait)
    for attempt, ceiling in {1: 1.0, 2: 2.0, 3: 3.0, 4: 3.0}.items():
        assert all(0.0 <= wait <= ceiling for wait in seen[attempt])
        assert max(seen[attempt]) > 0.8 * ceiling  # full jitter reaches near the ceiling...
        assert min(seen[attempt]) < 0.2 * ceiling  # ...and near zero


async def test_sleeps_happen_for_real_outside_testing_mode() -> None:
    """The testing switch is what skips sleeps: without it the wait is really slept."""
    set_testing(False)
    assert not is_testing()
    script = Script(throttled(0.05))
    started = time.monotonic()
    await run(script, RetryPolicy())
    assert time.monotonic() - started >= 0.05


async def test_each_attempt_calls_the_function_anew() -> None:
    """``fn`` is a factory: every attempt gets a fresh awaitable (e.g. a new pass through the breaker)."""
    made: list[Awaitable[str]] = []
    script = Script(throttled(0.0))

    def factory() -> Awaitable[str]:
        made.append(script())
        return made[-1]

    fn: Callable[[], Awaitable[str]] = factory
    assert await call_with_retry(fn, RetryPolicy()) == "done"
    assert len(made) == 2


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"budget_seconds": -1.0}, {"backoff_cap_seconds": math.inf}])
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    """Zero attempts, negative or infinite durations fail at construction."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        RetryPolicy(**bad)  # type: ignore[arg-type]


# --- parse_retry_after -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("99999999999", 86400.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850 form, in the past
        ("Sat Mar  1 12:01:00 2025", 60.0),  # asctime form, no zone: GMT
        (format_datetime(NOW + timedelta(days=400), usegmt=True), 86400.0),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(header: str, expected: float) -> None:
    """Delta-seconds and the three HTTP-date forms; negative and past are 0; huge is capped."""
    assert parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    "header", [None, "", "   ", "soon", "nan", "NaN", "inf", "-inf", "1e3", "12abc", "0x10", "Mon, 99 Foo", "9" * 100]
)
def test_parse_retry_after_rejects_malformed_values(header: str | None) -> None:
    """Anything that is not a number of seconds or an HTTP-date (NaN and infinities included) is None."""
    assert parse_retry_after(header, NOW) is None


@given(st.text(max_size=80))
def test_parse_retry_after_never_fails_and_stays_in_range(header: str) -> None:
    """For any text the result is None or a finite number within [0, cap]."""
    result = parse_retry_after(header, NOW, cap=3600.0)
    assert result is None or (math.isfinite(result) and 0.0 <= result <= 3600.0)


@given(st.integers(min_value=0, max_value=86400))
def test_parse_retry_after_is_exact_for_delta_seconds(seconds: int) -> None:
    """Every whole number of seconds up to a day comes back unchanged."""
    assert parse_retry_after(str(seconds), NOW) == float(seconds)
