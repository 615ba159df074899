"""The Graph gateway as the app builds it (real ``GraphServiceClient``, msgraph middleware, static-token
credential, our retry policy, breakers on the in-memory store) over an ``httpx.MockTransport`` that answers
like Graph. Each test asserts on the requests that reached the transport, so a retry that did not happen
(or one too many) shows up as a request count, not just as an outcome."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest

from shared.errors import NotFoundError, ThrottledError, TransientError, UnavailableError
from shared.graph.client import build_graph_client, build_http_client, tls_context
from shared.graph.credentials import StaticTokenCredential, build_credential
from shared.graph.gateway import DIRECTORY, MAIL, GraphGateway
from shared.policies import graph_attempt_seconds, retry_policy
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore, Outcome, default_classifier
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import set_testing
from shared.settings import Settings

BASE = "http://127.0.0.1:1/v1.0"
TOKEN = "static-test-token"
ENV = {
    "AzureWebJobsStorage": "x",
    "GRAPH_BASE_URL": BASE,
    "GRAPH_AUTH_MODE": "static_token",
    "GRAPH_STATIC_TOKEN": TOKEN,
    "RETRY_MAX_ATTEMPTS": "3",
    "RETRY_BUDGET_SECONDS": "5",
    "RETRY_MAX_RETRY_AFTER_SECONDS": "2",
}
ATTEMPTS = 3
POLICY = BreakerPolicy(
    consecutive_failures=50, open_base_seconds=10.0, state_cache_seconds=0.0, flush_interval_seconds=0.0
)
USER = {"id": "u1", "displayName": "Adele Vance", "mail": "adele@contoso.com"}
Responder = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeGraph:
    """Answers each request with the next scripted response (the last one repeats) and keeps the requests."""

    script: list[Responder] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)

    def answer(self, *responders: Responder) -> None:
        self.script = list(responders)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        responder = self.script[min(len(self.seen), len(self.script)) - 1]
        return responder(request)


def reply(status: int, body: object = None, *, headers: dict[str, str] | None = None) -> Responder:
    return lambda _: httpx.Response(status, json=body, headers=headers)


def raw(status: int, content: bytes) -> Responder:
    return lambda _: httpx.Response(status, content=content, headers={"Content-Type": "application/json"})


def graph_error(status: int, code: str, *, headers: dict[str, str] | None = None) -> Responder:
    return reply(status, {"error": {"code": code, "message": f"{code} said Graph"}}, headers=headers)


@dataclass
class Rig:
    graph: FakeGraph
    gateway: GraphGateway
    breakers: BreakerRegistry
    outcomes: list[Outcome]
    waits: list[float]


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> Iterator[None]:
    """Retry waits are computed, reported and charged to the budget, but not slept."""
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture(name="rig")
async def _rig() -> AsyncIterator[Rig]:
    settings = Settings.from_env(ENV)
    credential = build_credential(settings)
    assert isinstance(credential, StaticTokenCredential)  # the static_token mode's credential, as wired
    graph = FakeGraph()
    http_client = build_http_client(settings, transport=httpx.MockTransport(graph))
    outcomes: list[Outcome] = []

    def recording_classifier(error: BaseException | None) -> Outcome:
        outcomes.append(default_classifier(error))
        return outcomes[-1]

    waits: list[float] = []
    breakers = BreakerRegistry(MemoryBreakerStore(), POLICY, classify=recording_classifier)
    gateway = GraphGateway(
        build_graph_client(settings, credential, http_client),
        breakers,
        retry_policy(settings),
        KeyedLimiter(settings.graph_mailbox_concurrency, name="graph-mailbox"),
        on_retry=lambda _error, _attempt, wait: waits.append(wait),
        attempt_timeout=graph_attempt_seconds(settings),
    )
    yield Rig(graph, gateway, breakers, outcomes, waits)
    await http_client.aclose()
    await credential.close()


def assert_graph_requests(requests: list[httpx.Request], path: str) -> None:
    for request in requests:
        assert request.method == "GET"
        assert request.url.host == "127.0.0.1"
        assert request.url.path == path
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_get_user_returns_the_body_of_one_request(rig: Rig) -> None:
    rig.graph.answer(reply(200, USER))
    assert await rig.gateway.get_user("u1", select=["id", "displayName"]) == USER
    assert len(rig.graph.seen) == 1
    assert_graph_requests(rig.graph.seen, "/v1.0/users/u1")
    assert parse_qs(rig.graph.seen[0].url.query.decode()) == {"$select": ["id,displayName"]}
    assert rig.outcomes == [Outcome.SUCCESS]


async def test_a_429_is_retried_after_the_retry_after_it_carries(rig: Rig) -> None:
    rig.graph.answer(graph_error(429, "TooManyRequests", headers={"Retry-After": "1"}), reply(200, USER))
    assert await rig.gateway.get_user("u1") == USER
    assert len(rig.graph.seen) == 2
    assert_graph_requests(rig.graph.seen, "/v1.0/users/u1")
    assert rig.waits == [1.0]  # the server's hint, not our backoff
    assert rig.outcomes == [Outcome.FAILURE, Outcome.SUCCESS]


async def test_a_retry_after_beyond_what_we_wait_ends_the_call_at_once(rig: Rig) -> None:
    """RETRY_MAX_RETRY_AFTER_SECONDS is 2: a 60 s hint is handed to the caller instead of slept."""
    rig.graph.answer(graph_error(429, "TooManyRequests", headers={"Retry-After": "60"}), reply(200, USER))
    with pytest.raises(ThrottledError) as raised:
        await rig.gateway.get_user("u1")
    assert raised.value.retry_after == 60.0
    assert raised.value.upstream_code == "TooManyRequests"
    assert len(rig.graph.seen) == 1
    assert rig.waits == []


async def test_503s_are_retried_until_the_attempts_run_out(rig: Rig) -> None:
    rig.graph.answer(graph_error(503, "ServiceUnavailable"))
    with pytest.raises(UnavailableError) as raised:
        await rig.gateway.get_user("u1")
    assert raised.value.status == 503
    assert raised.value.upstream_code == "ServiceUnavailable"
    assert len(rig.graph.seen) == ATTEMPTS
    assert_graph_requests(rig.graph.seen, "/v1.0/users/u1")
    assert len(rig.waits) == ATTEMPTS - 1
    assert rig.outcomes == [Outcome.FAILURE] * ATTEMPTS


async def test_a_404_is_not_retried_and_counts_for_the_dependency(rig: Rig) -> None:
    """Graph answered, so the breaker counts a success; the caller gets the app's not-found error."""
    rig.graph.answer(graph_error(404, "Request_ResourceNotFound"), reply(200, USER))
    with pytest.raises(NotFoundError) as raised:
        await rig.gateway.get_user("nobody@contoso.com")
    assert raised.value.upstream_code == "Request_ResourceNotFound"
    assert len(rig.graph.seen) == 1
    assert_graph_requests(rig.graph.seen, "/v1.0/users/nobody@contoso.com")
    assert rig.outcomes == [Outcome.SUCCESS]
    snapshot = await rig.breakers.get(DIRECTORY).snapshot()
    assert snapshot.failures == 0


async def test_a_message_page_returns_the_skiptoken_continuation_and_follows_it(rig: Rig) -> None:
    messages = f"{BASE}/users/u1/messages"
    first = {
        "value": [{"id": "m1"}, {"id": "m2"}],
        "@odata.nextLink": f"{messages}?%24select=id&%24top=2&%24skiptoken=opaque%3D%3D",
    }
    rig.graph.answer(reply(200, first), reply(200, {"value": [{"id": "m3"}]}))
    items, continuation = await rig.gateway.list_messages("u1", top=2, select=["id"])
    assert [item["id"] for item in items] == ["m1", "m2"]
    assert continuation == "%24select=id&%24top=2&%24skiptoken=opaque%3D%3D"
    items, continuation = await rig.gateway.list_messages("u1", top=2, select=["id"], continuation=continuation)
    assert [item["id"] for item in items] == ["m3"]
    assert continuation is None
    assert len(rig.graph.seen) == 2
    assert_graph_requests(rig.graph.seen, "/v1.0/users/u1/messages")
    first_query = parse_qs(rig.graph.seen[0].url.query.decode())
    assert first_query["$top"] == ["2"]
    assert first_query["$orderby"] == ["receivedDateTime desc"]
    assert parse_qs(rig.graph.seen[1].url.query.decode()) == {
        "$select": ["id"],
        "$top": ["2"],
        "$skiptoken": ["opaque=="],
    }


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b'{"id": "u1", "displayName": ', "not JSON"), (b'["u1"]', "unexpected JSON shape")],
    ids=["truncated", "array"],
)
async def test_a_malformed_body_is_an_app_error(rig: Rig, content: bytes, reason: str) -> None:
    """A garbled 200 is the dependency misbehaving: a transient app error (retried like a 503), never a raw
    ``JSONDecodeError`` or a non-dict reaching the caller."""
    rig.graph.answer(raw(200, content))
    with pytest.raises(UnavailableError, match=reason) as raised:
        await rig.gateway.get_user("u1")
    assert isinstance(raised.value, TransientError)
    assert len(rig.graph.seen) == ATTEMPTS


async def test_a_message_page_without_a_value_array_is_an_app_error(rig: Rig) -> None:
    rig.graph.answer(reply(200, {"value": "not a list"}))
    with pytest.raises(UnavailableError, match="without a value array"):
        await rig.gateway.list_messages("u1", top=2, select=["id"])
    assert len(rig.graph.seen) == 1
    assert_graph_requests(rig.graph.seen, "/v1.0/users/u1/messages")


async def test_mail_and_directory_use_separate_breakers(rig: Rig) -> None:
    """A mail outage counts against the mail breaker only."""
    rig.graph.answer(graph_error(503, "ServiceUnavailable"))
    with pytest.raises(UnavailableError):
        await rig.gateway.list_messages("u1", top=2, select=["id"])
    assert (await rig.breakers.get(MAIL).snapshot()).failures == ATTEMPTS
    assert (await rig.breakers.get(DIRECTORY).snapshot()).failures == 0


def test_graph_transport_reuses_one_verifying_tls_context() -> None:
    """The Graph client's TLS context is the process's one (not a second certificate load), and it verifies
    certificates and host names."""
    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
