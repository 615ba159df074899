"""Table keys derived from untrusted text are always valid and never collide across the two forms; the
storage-error layer gives callers one type for outages and leaves answers about data alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import StorageUnavailableError
from shared.storage import OutageWait, counting_calls, guard, safe_key, storage_call

FORBIDDEN = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@given(st.text(max_size=3000))
def test_safe_key_is_always_a_valid_table_key(text: str) -> None:
    """Whatever the input (slashes, control characters, 3,000 characters), the key is valid and ≤ 1 KiB."""
    key = safe_key(text)
    assert not FORBIDDEN & set(key)
    assert 0 < len(key.encode()) <= 1024


def test_readable_and_hashed_keys_do_not_collide() -> None:
    """A harmless id stays readable; a text that looks like a hashed key is itself hashed."""
    assert safe_key("alice@contoso.com") == "alice@contoso.com"
    hashed = safe_key("a/b")
    assert hashed.startswith("h-")
    assert safe_key(hashed) != hashed


class _FlakyClient:
    """An SDK-shaped client whose calls raise what it is told to."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent: list[str] = []

    async def send_message(self, text: str) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append(text)
        return text

    def list_things(self) -> AsyncIterator[int]:
        async def pages() -> AsyncIterator[int]:
            yield 1
            if self.error is not None:
                raise self.error

        return pages()


def _http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    "error",
    [ServiceRequestError("refused"), ConnectionResetError(), TimeoutError(), _http_error(503), _http_error(403)],
    ids=type,
)
async def test_an_outage_leaves_a_guarded_client_as_storage_unavailable(error: Exception) -> None:
    """Whatever the SDK or the socket raised, callers see one type, naming the operation, not the URL."""
    client = guard(_FlakyClient(error), "queue q")
    with pytest.raises(StorageUnavailableError) as raised:
        await client.send_message("x")
    assert raised.value.message.startswith("storage queue q.send_message failed")
    assert raised.value.service == "storage"


@pytest.mark.parametrize("error", [ResourceNotFoundError("gone"), ResourceExistsError("there"), _http_error(412)])
async def test_answers_about_data_keep_their_sdk_type(error: Exception) -> None:
    """404/409/412 are answers, not outages: callers branch on them as before."""
    with pytest.raises(type(error)):
        await guard(_FlakyClient(error), "table t").send_message("x")


async def test_a_pager_failing_mid_iteration_is_translated_too() -> None:
    """Query results arrive page by page; a failure on a later page is an outage like any other."""
    seen: list[int] = []

    async def read_all() -> None:
        async for item in guard(_FlakyClient(ServiceRequestError("dropped")), "table t").list_things():
            seen.append(item)

    with pytest.raises(StorageUnavailableError):
        await read_all()
    assert seen == [1]


async def test_storage_call_turns_an_expired_deadline_into_an_outage() -> None:
    with pytest.raises(StorageUnavailableError, match="storage slow thing failed: TimeoutError"):
        async with storage_call("slow thing", timeout=0.01):
            await asyncio.sleep(1)


async def test_outage_wait_retries_until_storage_answers_or_the_deadline() -> None:
    """Retried in place while Storage is unavailable; past the deadline the last error is raised."""
    answers: list[Exception | None] = [StorageUnavailableError("down"), StorageUnavailableError("down"), None]

    async def call() -> str:
        error = answers.pop(0)
        if error is not None:
            raise error
        return "ok"

    wait = OutageWait(budget_seconds=5, first_delay=0.01, max_delay=0.02)
    assert await wait.run(call) == "ok"

    async def always_down() -> str:
        raise StorageUnavailableError("down")

    with pytest.raises(StorageUnavailableError):
        await OutageWait(budget_seconds=0.05, first_delay=0.01).run(always_down)


class _Answers:
    """A client whose ``write`` raises the given error (or returns) once per call."""

    def __init__(self, *errors: Exception | None) -> None:
        self._errors = list(errors)

    async def write(self) -> None:
        error = self._errors.pop(0)
        if error is not None:
            raise error


def _answered(status: int, kind: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    error = kind(message=str(status))
    error.status_code = status
    return error


async def test_counting_calls_counts_409_and_412_answers_as_conflicts() -> None:
    """Contention between writers (a row created or changed first by another) is counted apart from
    other answers, so the benchmarks can report conflicts per item."""
    client = guard(
        _Answers(None, _answered(409, ResourceExistsError), _answered(412), _answered(404, ResourceNotFoundError)), "t"
    )
    with counting_calls() as count:
        await client.write()
        for _ in range(3):
            with pytest.raises(HttpResponseError):
                await client.write()
    assert (count.calls, count.conflicts) == (4, 2)
