"""The app under the harness with telemetry on: the real Azure Monitor exporter sends to a local ingestion
endpoint, which keeps what it receives. Spans of an invocation the caller sampled arrive (with the Graph
request as an HTTP dependency); an invocation whose traceparent says "not sampled" sends none; no token or
storage key is in anything sent."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.graphsim.client import SimControl
from tests.e2e.conftest import ROOT, RunningApp, app_env
from tests.e2e.pipeline import subscribe
from tests.fixtures.funchost import FuncHostLauncher
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

pytestmark = pytest.mark.e2e


class Ingestion:
    """A local stand-in for Application Insights' ingestion endpoint (``POST /v2.1/track``)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.items: list[dict[str, Any]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                text = raw.decode("utf-8", "replace")
                parsed = json.loads(text) if text.strip() else []
                items = parsed if isinstance(parsed, list) else [parsed]
                with lock:
                    outer.bodies.append(text)
                    outer.items.extend(item for item in items if isinstance(item, dict))
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def spans_of(self, trace_id: str) -> list[dict[str, Any]]:
        """Requests and dependencies (spans) received for a trace."""
        kinds = ("Microsoft.ApplicationInsights.RemoteDependency", "Microsoft.ApplicationInsights.Request")
        return [
            i
            for i in list(self.items)
            if i.get("name") in kinds and i.get("tags", {}).get("ai.operation.id") == trace_id
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(name="ingestion")
def _ingestion() -> Iterator[Ingestion]:
    endpoint = Ingestion()
    yield endpoint
    endpoint.close()


def _telemetry_env(storage: str, graph: str, ingestion: Ingestion) -> dict[str, str]:
    return app_env(
        storage,
        graph,
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.url}"
        ),
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",  # statsbeat would post to Microsoft's endpoint
    )


def _wait(found: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not found():
        time.sleep(0.5)
    return found()


def test_exported_spans_follow_the_callers_sampling_flag(
    funchost_factory: FuncHostLauncher,
    storage_connection_string: str,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
    ingestion: Ingestion,
    tmp_path: Path,
) -> None:
    env = _telemetry_env(storage_connection_string, graphsim_server.base_url, ingestion)
    host = funchost_factory(ROOT, env, settings=tmp_path / "no-local-settings.json")
    sampled, dropped = uuid.uuid4().hex, uuid.uuid4().hex
    first, second = (user["id"] for user in graphsim.users()[:2])
    with httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=30) as client:
        for trace_id, user in ((sampled, first), (dropped, second)):
            parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{'01' if trace_id == sampled else '00'}"
            answer = client.get(f"/api/users/{user}", headers={"traceparent": parent})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Cache"] == "miss"  # one Graph request each

    def graph_requests() -> list[dict[str, Any]]:
        data = [s["data"]["baseData"] for s in ingestion.spans_of(sampled)]
        return [d for d in data if d.get("type") == "HTTP" and d["data"].startswith(graphsim_server.base_url)]

    _wait(graph_requests)
    time.sleep(6)  # one more export interval, so spans of the unsampled trace would have arrived too
    graph = graph_requests()
    assert graph, f"no Graph request arrived for the sampled trace: {ingestion.spans_of(sampled)}"
    assert graph[0]["data"].startswith(f"{graphsim_server.base_url}/users/{first}?$select=id,")
    assert graph[0]["resultCode"] == "200"
    assert ingestion.spans_of(dropped) == []
    everything = "\n".join(ingestion.bodies)
    assert dropped not in everything
    assert GRAPHSIM_TOKEN not in everything
    assert storage_connection_string.split("AccountKey=")[1].split(";")[0] not in everything


def test_queue_send_and_processing_arrive_as_messaging_spans(
    funchost_factory: FuncHostLauncher,
    storage_connection_string: str,
    graphsim_server: GraphSimServer,
    graphsim: SimControl,
    ingestion: Ingestion,
    tmp_path: Path,
) -> None:
    """A notification POSTed in a sampled trace: its persist arrives as the dependency ``send
    graph-notifications``; the queue trigger's processing arrives as the request ``process
    graph-notifications``."""
    env = _telemetry_env(storage_connection_string, graphsim_server.base_url, ingestion)
    host = funchost_factory(ROOT, env, settings=tmp_path / "no-local-settings.json")
    with httpx.Client(base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=30) as client:
        user = graphsim.users()[0]["id"]
        subscription, client_state = subscribe(
            RunningApp(host, client, env), graphsim_server.base_url, "users", "updated"
        )
        item = {
            "subscriptionId": subscription,
            "clientState": client_state,
            "changeType": "updated",
            "resource": f"Users/{user}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": user},
            "tenantId": "00000000-0000-0000-0000-0000000000aa",
        }
        trace_id = uuid.uuid4().hex
        parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
        accepted = client.post("/api/notifications", json={"value": [item]}, headers={"traceparent": parent})
        assert accepted.status_code == 202, accepted.text

    def sends() -> list[dict[str, Any]]:
        data = [s["data"]["baseData"] for s in ingestion.spans_of(trace_id)]
        return [d for d in data if d.get("name") == "send graph-notifications"]

    def processed() -> list[dict[str, Any]]:
        items = [i for i in list(ingestion.items) if i.get("name") == "Microsoft.ApplicationInsights.Request"]
        return [
            i["data"]["baseData"] for i in items if i["data"]["baseData"].get("name") == "process graph-notifications"
        ]

    assert _wait(sends), f"no send span in the webhook's trace: {ingestion.spans_of(trace_id)}"
    process = _wait(processed)
    assert process, "no processing span arrived"
    # The exporter drops every messaging.* attribute from a record's properties and reads only the old
    # messaging.destination for its source, so the queue is named by the span name here; the in-memory SDK
    # tests check the attributes one by one. The app's own attribute stays.
    assert process[0]["properties"] == {"graphapp.queue.dequeue_count": "1"}
    assert client_state not in "\n".join(ingestion.bodies)
