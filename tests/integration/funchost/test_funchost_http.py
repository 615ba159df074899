"""HTTP triggers through the harness subprocess: routing, routePrefix, methods, auth levels, errors."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.azurite import Azurite
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.integration.funchost._support import SAMPLE_APP, YEARLY

pytestmark = pytest.mark.integration


@pytest.fixture(name="harness", scope="module")
def _harness(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuncHostProcess]:
    """One harness for this module's read-only HTTP checks (starting a process per test costs ~1 s)."""
    workdir = tmp_path_factory.mktemp("funchost-http")
    launcher = FuncHostLauncher(workdir)
    azurite.start()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_QUEUE": "funchost-http-unused",
        "TICK_SCHEDULE": YEARLY,
        "SAMPLE_RECORD_DIR": str(workdir),
    }
    try:
        yield launcher(SAMPLE_APP, env)
    finally:
        launcher.close()


@pytest.fixture(name="client")
def _client(harness: FuncHostProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=harness.base_url, timeout=10.0) as client:
        yield client


def test_route_parameters_reach_a_real_http_request(client: httpx.Client) -> None:
    """Route params, query params, headers and the URL arrive in a real azure.functions.HttpRequest; the
    HttpResponse's headers and mimetype come back."""
    response = client.get("/sample/hello/Ada", params={"x": "1"}, headers={"x-sample": "yes"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-served-by"] == "sample"
    body = response.json()
    assert body["name"] == "Ada"
    assert body["params"] == {"x": "1"}
    assert body["header"] == "yes"
    assert body["method"] == "GET"
    assert body["url"].endswith("/sample/hello/Ada?x=1")
    assert body["request_type"] == "azure.functions.http.HttpRequest"  # what HttpRequestConverter makes
    assert body["function_name"] == "hello"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["invocation_id"])


def test_route_prefix_comes_from_host_json(client: httpx.Client) -> None:
    """host.json sets routePrefix 'sample', so the default 'api' prefix serves nothing."""
    assert client.get("/sample/ping").status_code == 200
    assert client.get("/api/ping").status_code == 404
    assert client.get("/ping").status_code == 404


def test_wrong_method_is_405_and_unknown_path_is_404(client: httpx.Client) -> None:
    """A route that exists answers 405 to a method it does not declare; an unknown path is 404."""
    assert client.delete("/sample/hello/Ada").status_code == 405
    assert client.get("/sample/nowhere").status_code == 404


def test_optional_int_parameter_and_constraint(client: httpx.Client, harness: FuncHostProcess) -> None:
    """`items/{id:int?}` matches with and without the id, and a non-integer id does not match."""
    headers = {"x-functions-key": harness.function_key}
    assert client.get("/sample/items", headers=headers).json()["id"] is None
    assert client.get("/sample/items/42", headers=headers).json()["id"] == "42"
    assert client.get("/sample/items/abc", headers=headers).status_code == 404
    posted = client.post("/sample/items/7", headers=headers, content=b"x" * 1000)
    assert posted.status_code == 201
    assert posted.json() == {"id": "7", "method": "POST", "body_length": 1000}


def test_function_level_route_requires_a_key(client: httpx.Client, harness: FuncHostProcess) -> None:
    """Without a key (or with a wrong one) a function-level route answers 401 with no body; the function
    key works as the x-functions-key header and as ?code=, and so does the master key."""
    missing = client.get("/sample/items/1")
    assert missing.status_code == 401
    assert missing.content == b""
    assert client.get("/sample/items/1", headers={"x-functions-key": "wrong"}).status_code == 401
    assert client.get("/sample/items/1", headers={"x-functions-key": harness.function_key}).status_code == 200
    assert client.get("/sample/items/1", params={"code": harness.function_key}).status_code == 200
    assert client.get("/sample/items/1", headers={"x-functions-key": harness.master_key}).status_code == 200


def test_admin_level_route_rejects_the_function_key(client: httpx.Client, harness: FuncHostProcess) -> None:
    """An admin-level route accepts only the master key."""
    assert client.get("/sample/secret", headers={"x-functions-key": harness.function_key}).status_code == 401
    assert client.get("/sample/secret", params={"code": harness.master_key}).text == "admin only"


def test_exception_is_a_bare_500_and_logged(client: httpx.Client, harness: FuncHostProcess) -> None:
    """A function that raises gives 500 with no stack trace or message in the body; the log has both."""
    response = client.get("/sample/boom")
    assert response.status_code == 500
    assert b"sensitive" not in response.content
    assert b"Traceback" not in response.content
    harness.wait_for_output("RuntimeError: sensitive detail")
    assert re.search(r"Executed 'Functions\.boom' \(Failed, Id=[0-9a-f-]{36}, Duration=\d+ms\)", harness.output)


def test_invocations_are_logged_like_the_host(client: httpx.Client, harness: FuncHostProcess) -> None:
    """Each invocation logs "Executing 'Functions.<name>' (Reason=..., Id=...)" and "Executed ... (Succeeded, ...)"."""
    assert client.get("/sample/ping").text == "pong"
    harness.wait_for_output("Executed 'Functions.ping' (Succeeded")
    assert re.search(r"Executing 'Functions\.ping' \(Reason='[^']+', Id=[0-9a-f-]{36}\)", harness.output)


def test_admin_api_needs_the_master_key(client: httpx.Client, harness: FuncHostProcess) -> None:
    """POST /admin/functions/{name}: 401 with the function key, 404 for an unknown function, 400 for an
    HTTP function; the host status is open to loopback callers and reports Running."""
    headers = {"x-functions-key": harness.master_key}
    assert client.post("/admin/functions/yearly", json={"input": ""}, params={"code": "x"}).status_code == 401
    assert (
        client.post(
            "/admin/functions/yearly", json={"input": ""}, headers={"x-functions-key": harness.function_key}
        ).status_code
        == 401
    )
    assert client.post("/admin/functions/nope", json={"input": ""}, headers=headers).status_code == 404
    assert client.post("/admin/functions/ping", json={"input": ""}, headers=headers).status_code == 400
    status = client.get("/admin/host/status").json()
    assert status["state"] == "Running"
    assert "errors" not in status
    names = {f["name"] for f in client.get("/admin/functions", headers=headers).json()}
    assert names == {"hello", "items", "secret", "boom", "ping", "on_message", "tick", "yearly"}


def test_the_listening_line_is_printed(harness: FuncHostProcess) -> None:
    """The CLI prints exactly one 'funchost listening on http://HOST:PORT' line once everything runs."""
    lines = [line for line in harness.output.splitlines() if line.startswith("funchost listening on ")]
    assert lines == [f"funchost listening on {harness.base_url}"]


def test_sample_app_dir_is_unchanged(harness: FuncHostProcess) -> None:
    """The harness writes nothing into the app folder (no state, no logs)."""
    assert sorted(p.name for p in Path(harness.app_dir).iterdir() if p.name != "__pycache__") == [
        "function_app.py",
        "host.json",
    ]


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) so far, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _post_oversized_body(port: int, declared: int, send: int) -> bytes:
    """POST declaring ``declared`` bytes and streaming up to ``send`` of them until the server stops
    taking them; returns the start of the answer (empty if the connection was reset)."""
    chunk = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /sample/ping HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            for _ in range(send // len(chunk)):
                sock.sendall(chunk)
        try:
            return sock.recv(64)
        except OSError:
            return b""


def test_bodies_declared_over_the_limit_do_not_grow_the_process(harness: FuncHostProcess) -> None:
    """Four concurrent POSTs declaring 200 MB (over the 100 MB default) that really stream 120 MB each: the
    harness refuses them by Content-Length and keeps none of it, so its peak RSS barely moves (buffering up
    to the limit first would add ~400 MB)."""
    port = int(harness.base_url.rsplit(":", 1)[1])
    before = _peak_rss_kib(harness.process.pid)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: _post_oversized_body(port, 200_000_000, 120 << 20), range(4)))
    grown_mib = (_peak_rss_kib(harness.process.pid) - before) / 1024
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"
    assert any(answer.startswith(b"HTTP/1.1 413 ") for answer in answers), answers
    assert httpx.get(f"{harness.base_url}/sample/ping").text == "pong"  # still serving
