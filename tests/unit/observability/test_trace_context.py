"""App spans join the host's invocation trace (``context.trace_context``); logs leave the app by one path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from devtools.funchost.invoke import InvocationContext
from shared import metrics
from shared.invocation import run_http, run_queue, run_timer
from shared.wiring import registry
from tests.unit.observability.otel import Recorded

ROOT = Path(__file__).resolve().parents[3]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOST_SPAN_ID = "00f067aa0ba902b7"
ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
    "GRAPH_AUTH_MODE": "static_token",
    "GRAPH_STATIC_TOKEN": "t",
    "TIMER_STARTUP_DELAY_SECONDS": "0",  # the timer case runs at once, as in a process past its start
}


@pytest.fixture(autouse=True)
async def _settings(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    await registry.reset()
    yield
    await registry.reset()


def _context(invocation_id: str = "inv-42") -> InvocationContext:
    return InvocationContext(invocation_id, "f", ".", f"00-{TRACE_ID}-{HOST_SPAN_ID}-01")


async def _invoke(kind: str, name: str, handler: Callable[[], Awaitable[Any]]) -> None:
    if kind == "http":
        await run_http(name, _context(), handler)
    elif kind == "pubsub":
        msg = func.QueueMessage(id="m-1", body=b"{}")
        await run_queue(name, _context(), msg, handler, queue="graph-notifications")
    else:
        await run_timer(name, _context(), handler)


def _spans(otel: Recorded) -> dict[str, ReadableSpan]:
    return {span.name: span for span in otel.spans.get_finished_spans()}


@pytest.mark.parametrize("kind", ["http", "pubsub", "timer"])
async def test_spans_in_an_invocation_carry_the_hosts_trace_id(otel: Recorded, kind: str) -> None:
    """The invocation span is a child of the host's span (from the traceparent the host passed), and a span
    the app opens inside is its child: one trace id from the host's request to the app's Graph call."""

    async def handler() -> func.HttpResponse:
        with metrics.span("graph.request"):
            return func.HttpResponse("ok")

    await _invoke(kind, "get_user", handler)
    spans = _spans(otel)
    invocation, inner = spans["get_user"], spans["graph.request"]
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {TRACE_ID}
    assert invocation.parent is not None
    assert invocation.parent.is_remote
    assert format(invocation.parent.span_id, "016x") == HOST_SPAN_ID
    assert inner.parent is not None
    if kind == "pubsub":  # a queue message's processing is a span of its own between the two
        process = spans["process graph-notifications"]
        assert process.kind is SpanKind.CONSUMER
        assert process.parent is not None
        assert process.parent.span_id == invocation.context.span_id
        assert inner.parent.span_id == process.context.span_id
    else:
        assert inner.parent.span_id == invocation.context.span_id
    assert invocation.attributes == {"faas.invocation_id": "inv-42", "faas.trigger": kind}


async def test_a_failed_invocation_is_an_error_span_in_the_same_trace(otel: Recorded) -> None:
    """A queue invocation that raises (for redelivery) leaves an error span under the host's trace."""

    async def handler() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await _invoke("pubsub", "process_notifications", handler)
    span = _spans(otel)["process_notifications"]
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("trace_parent", ["", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "ff-x-y-z"])
async def test_a_missing_or_malformed_traceparent_starts_a_new_trace(otel: Recorded, trace_parent: str) -> None:
    """No usable parent (absent, malformed, all-zero ids): the invocation still gets a valid root span."""

    async def handler() -> func.HttpResponse:
        return func.HttpResponse("ok")

    await run_http("status", InvocationContext("inv-1", "status", ".", trace_parent), handler)
    span = _spans(otel)["status"]
    assert span.parent is None
    assert span.context.is_valid


def test_without_telemetry_an_invocation_opens_no_span() -> None:
    """Until Azure Monitor is configured the span is the shared no-op context (no SDK import)."""
    assert metrics.invocation_span("f", "inv", "http", f"00-{TRACE_ID}-{HOST_SPAN_ID}-01") is metrics.span("x")


def test_ingestion_credential_follows_the_hosts_authentication_string() -> None:
    """``Authorization=AAD[;ClientId=...]`` gives a managed identity (user-assigned when a client id is given)."""
    from azure.identity import ManagedIdentityCredential

    assert metrics.ingestion_credential(None) is None
    assert isinstance(metrics.ingestion_credential("Authorization=AAD"), ManagedIdentityCredential)
    assert isinstance(metrics.ingestion_credential("Authorization=AAD;ClientId=c-1"), ManagedIdentityCredential)


# Runs in a fresh process: configure_azure_monitor sets the process's global providers once.
_SCRIPT = """
import json, logging, os, sys
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
from opentelemetry.sdk._logs.export import LogExportResult

exported = []  # what reaches Application Insights' log exporter (its network call replaced by a count)

def count(self, batch, **kwargs):
    exported.extend(str(item.log_record.body) for item in batch)
    return LogExportResult.SUCCESS

AzureMonitorLogExporter.export = count
from shared.metrics import otel
otel.configure_azure_monitor(
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
)
from opentelemetry import _logs, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

spans = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))
received = []

class HostPath(logging.Handler):  # the worker's handler, which forwards records to the host
    def emit(self, record):
        received.append(record.getMessage())

logging.getLogger().addHandler(HostPath())
with otel.invocation_span("f", "inv-1", "http", sys.argv[1]):
    logging.getLogger("graphapp.events").warning("exported once")
flush = getattr(_logs.get_logger_provider(), "force_flush", None)
if flush:
    flush()
print(json.dumps({
    "app_exporter": exported.count("exported once"),
    "host_path": received.count("exported once"),
    "trace_ids": [format(s.context.trace_id, "032x") for s in spans.get_finished_spans()],
}), flush=True)
os._exit(0)  # skip exporter shutdown (its endpoint is deliberately unreachable)
"""


def test_configured_azure_monitor_exports_spans_and_leaves_logs_to_the_host() -> None:
    """With the real distro configured, a record logged in an invocation leaves the process once: through the
    worker's handler to the host (which exports it), not also through an app-side OpenTelemetry log exporter;
    spans still follow the host's traceparent."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, f"00-{TRACE_ID}-{HOST_SPAN_ID}-01"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"app_exporter": 0, "host_path": 1, "trace_ids": [TRACE_ID]}


# Also a fresh process: the host's sampled flag decides whether the app's spans of an invocation are kept.
_SAMPLING_SCRIPT = """
import json, os
from shared.metrics import otel
otel.configure_azure_monitor(
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
)
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

spans = InMemorySpanExporter()
provider = trace.get_tracer_provider()
provider.add_span_processor(SimpleSpanProcessor(spans))
cases = {"sampled": "00-TRACE-SPAN-01", "not_sampled": "00-TRACE-SPAN-00", "no_parent": ""}
for case, parent in cases.items():
    with otel.invocation_span(case, "inv-" + case, "http", parent):
        with otel.traced("GET", "client", {"http.request.method": "GET"}):
            pass
print(json.dumps({
    "exported": sorted(s.name for s in spans.get_finished_spans()),
    "sampler": provider.sampler.get_description(),
    "sampler_env_left": os.environ.get("OTEL_TRACES_SAMPLER"),
    "httpx_instrumented": HTTPXClientInstrumentor().is_instrumented_by_opentelemetry,
}), flush=True)
os._exit(0)
""".replace("TRACE", TRACE_ID).replace("SPAN-", HOST_SPAN_ID + "-")


def test_app_spans_follow_the_hosts_sampling_decision() -> None:
    """With the real distro configured: an invocation whose traceparent is sampled (-01) keeps its spans, one
    the host did not sample (-00) exports none, one without a parent is kept; the sampler is parent-based,
    the setting is not left in the environment, and the distro's httpx spans are off (the Graph transport
    makes the HTTP client spans)."""
    result = subprocess.run(
        [sys.executable, "-c", _SAMPLING_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["exported"] == ["GET", "GET", "no_parent", "sampled"]
    assert report["sampler"].startswith("ParentBased{root:AlwaysOnSampler")
    assert report["sampler_env_left"] is None
    assert report["httpx_instrumented"] is False
