"""Spans after the OpenTelemetry semantic conventions, recorded by the real SDK (in-memory exporter) while the
real clients talk to the Graph simulator and Azurite: HTTP client spans for Graph requests, messaging spans
for queue sends, database spans for Table calls, and no credential in any attribute."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import pytest
from azure.core.exceptions import ResourceNotFoundError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from devtools.graphsim.client import SimControl
from shared import metrics, storage
from shared.graph.client import build_graph_client, build_http_client
from shared.graph.credentials import StaticTokenCredential
from shared.graph.gateway import GraphGateway
from shared.metrics import semconv
from shared.resilience import BreakerPolicy, BreakerRegistry, MemoryBreakerStore
from shared.resilience.limits import KeyedLimiter
from shared.resilience.retry import RetryPolicy
from shared.settings import Settings
from shared.storage import Queues, Tables
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer
from tests.unit.observability.otel import Recorded

pytestmark = pytest.mark.integration

HTTP_ATTRIBUTES = {"http.request.method", "url.full", "server.address", "server.port", "http.response.status_code"}


@pytest.fixture(name="gateway")
async def _gateway(graphsim_server: GraphSimServer, graphsim: SimControl) -> AsyncIterator[GraphGateway]:
    """The app's gateway and HTTP client on the simulator, two attempts per call."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "GRAPH_BASE_URL": graphsim_server.base_url,
            "GRAPH_AUTH_MODE": "static_token",
            "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
        }
    )
    http_client = build_http_client(settings)
    client = build_graph_client(settings, StaticTokenCredential(GRAPHSIM_TOKEN), http_client)
    breakers = BreakerRegistry(MemoryBreakerStore(), BreakerPolicy(state_cache_seconds=0, flush_interval_seconds=0))
    retry = RetryPolicy(max_attempts=2, budget_seconds=5.0, max_retry_after_seconds=0.2, backoff_base_seconds=0.01)
    yield GraphGateway(client, breakers, retry, KeyedLimiter(4))
    await http_client.aclose()


@pytest.fixture(name="traced_storage")
def _traced_storage(otel: Recorded) -> Iterator[None]:
    """Storage calls traced as the app does once telemetry is on."""
    storage.trace_calls(metrics.storage_span)
    yield
    storage.trace_calls(None)


def _by_kind(otel: Recorded, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in otel.spans.get_finished_spans() if span.kind is kind]


def _no_secret(spans: list[ReadableSpan], *secrets: str) -> None:
    for span in spans:
        for key, value in (span.attributes or {}).items():
            for secret in secrets:
                assert secret not in str(value), f"{span.name} {key} carries a credential"


async def test_each_graph_request_is_an_http_client_span(
    otel: Recorded, gateway: GraphGateway, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """A 429 then a 200: two CLIENT spans named after the method, children of the logical ``graph.call``,
    with the HTTP conventions' attributes; the 429 is an error with ``error.type`` "429". The bearer token
    is in no attribute."""
    user = graphsim.users()[0]
    graphsim.add_fault(path=r"^/users", status=429, retry_after=0, count=1)
    assert (await gateway.get_user(user["id"]))["id"] == user["id"]
    requests = _by_kind(otel, SpanKind.CLIENT)
    assert [span.name for span in requests] == ["GET", "GET"]
    throttled, ok = requests
    logical = next(span for span in otel.spans.get_finished_spans() if span.name == "graph.call")
    assert {span.parent.span_id for span in requests if span.parent} == {logical.context.span_id}
    assert set(ok.attributes or {}) == HTTP_ATTRIBUTES
    assert set(throttled.attributes or {}) == HTTP_ATTRIBUTES | {"error.type"}
    assert (throttled.attributes or {})["http.response.status_code"] == 429
    assert (throttled.attributes or {})["error.type"] == "429"
    assert throttled.status.status_code is StatusCode.ERROR
    attributes = ok.attributes or {}
    assert attributes["http.request.method"] == "GET"
    assert str(attributes["url.full"]).startswith(f"{graphsim_server.base_url}/users/{user['id']}")
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(graphsim_server.base_url.split(":")[2].split("/")[0])
    assert attributes["http.response.status_code"] == 200
    _no_secret(requests, GRAPHSIM_TOKEN, "Bearer")


async def test_a_continuation_token_is_redacted_from_url_full(
    otel: Recorded, gateway: GraphGateway, graphsim: SimControl
) -> None:
    """A mailbox paged with an opaque ``$skiptoken``: the next page's span keeps the URL but not the token."""
    graphsim.configure(message_paging="skiptoken")
    try:
        user = graphsim.users()[0]["id"]
        _, continuation = await gateway.list_messages(user, top=2, select=["id"])
        assert continuation is not None
        token = parse_qs(continuation)["$skiptoken"][0]
        await gateway.list_messages(user, top=2, select=["id"], continuation=continuation)
    finally:
        graphsim.configure(message_paging="skip")
    second = _by_kind(otel, SpanKind.CLIENT)[-1]
    url = str((second.attributes or {})["url.full"])
    assert f"$skiptoken={semconv.REDACTED}" in url
    _no_secret([second], token, token[:16])


async def test_queue_sends_and_table_calls_follow_the_messaging_and_database_conventions(
    otel: Recorded, traced_storage: None, storage_connection_string: str, unique_name: str
) -> None:
    """Through the app's guarded clients on Azurite: a send is ``send <queue>`` (CLIENT, messaging
    attributes), a table write is ``upsert_entity <table>`` (CLIENT, database attributes), a read of a
    missing row is an error span with the SDK's error type; the account key is in no attribute."""
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    queue_name = f"q{unique_name}"[:60].lower()
    async with (
        TableServiceClient.from_connection_string(storage_connection_string) as table_service,
        QueueServiceClient.from_connection_string(storage_connection_string) as queue_service,
    ):
        queue = await Queues(queue_service).get(queue_name)
        await queue.send_message("hello")
        table = await Tables(table_service, f"t{unique_name}"[:40]).get("spans")
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 1})
        with pytest.raises(ResourceNotFoundError):
            await table.get_entity("p", "missing")
        table_name = table.table_name
    spans = {span.name: span for span in _by_kind(otel, SpanKind.CLIENT)}
    send = spans[f"send {queue_name}"].attributes or {}
    assert send["messaging.system"] == semconv.MESSAGING_SYSTEM
    assert send["messaging.destination.name"] == queue_name
    assert send["messaging.operation.type"] == "send"
    assert send["messaging.operation.name"] == "send"
    assert send["server.address"] == "127.0.0.1"
    upsert = spans[f"upsert_entity {table_name}"].attributes or {}
    assert upsert["db.system.name"] == semconv.DB_SYSTEM
    assert upsert["db.collection.name"] == table_name
    assert upsert["db.operation.name"] == "upsert_entity"
    assert upsert["db.namespace"] == "devstoreaccount1"
    missing = spans[f"get_entity {table_name}"]
    assert missing.status.status_code is StatusCode.ERROR
    assert (missing.attributes or {})["error.type"] == "azure.core.exceptions.ResourceNotFoundError"
    assert f"create_queue {queue_name}" not in spans  # not a messaging operation: no span of ours
    account_key = storage_connection_string.split("AccountKey=")[1].split(";")[0]
    _no_secret(list(spans.values()), account_key)
