"""FuncHost in the pytest loop: limits the host enforces (function timeout, request body size) and the
trigger inputs the app receives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import azure.functions as func
import azure.functions.http
import azure.functions.timer
import httpx
import pytest
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.timer import TimerRequestConverter

from devtools.funchost import FuncHost

ENV = {"FUNCHOST_FUNCTION_KEY": "f", "FUNCHOST_MASTER_KEY": "m"}
ADMIN = {"x-functions-key": "m"}


def _app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="slow")
    async def slow(req: func.HttpRequest) -> func.HttpResponse:
        await asyncio.sleep(30)
        return func.HttpResponse("too late")

    @app.route(route="upload", methods=["POST"])
    def upload(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(str(len(req.get_body())))

    return app


async def test_function_timeout_cancels_an_async_function(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """host.json functionTimeout cancels a slow async function: the caller gets a bare 500 and the log says
    the timeout was exceeded."""
    host = FuncHost(_app(), app_dir=tmp_path, host_json={"functionTimeout": "00:00:00.300"}, env=ENV)
    await host.start()
    try:
        with caplog.at_level(logging.INFO, logger="funchost"):
            async with httpx.AsyncClient(base_url=host.base_url, timeout=10) as client:
                response = await client.get("/api/slow")
        assert response.status_code == 500
        assert response.content == b""
        assert "Timeout value of 00:00:00.300 exceeded by function 'Functions.slow'" in caplog.text
        assert "Executed 'Functions.slow' (Failed" in caplog.text
    finally:
        await host.stop()


async def test_request_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """Bodies over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (100 MB by default; 1 KiB here) get 413 without running
    the function, whether the length is declared or the body is chunked."""

    async def chunked(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 256):
            yield b"x" * 256

    host = FuncHost(_app(), app_dir=tmp_path, env={**ENV, "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024"})
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url) as client:
            assert (await client.post("/api/upload", content=b"x" * 1000)).text == "1000"
            assert (await client.post("/api/upload", content=b"x" * 4096)).status_code == 413
            assert (await client.post("/api/upload", content=chunked(768))).text == "768"
            assert (await client.post("/api/upload", content=chunked(4096))).status_code == 413
    finally:
        await host.stop()


async def test_declared_content_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    """Headers declaring 200 MB and only a few bytes sent: the harness answers 413 at once (it does not wait
    for, or buffer, a body it would refuse) with Connection: close; the function never runs."""
    calls: list[int] = []
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="upload", methods=["POST"])
    def upload(req: func.HttpRequest) -> func.HttpResponse:
        calls.append(len(req.get_body()))
        return func.HttpResponse("read")

    host = FuncHost(app, app_dir=tmp_path, env=ENV)
    await host.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        writer.write(b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\nabc")
        await writer.drain()
        # The rest of the body never comes: the answer must not depend on it (a harness that reads first
        # would wait here until the timeout).
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in answer.lower()
        assert calls == []
    finally:
        await host.stop()


async def test_trigger_inputs_and_http_results_go_through_the_azure_functions_converters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the app receives is exactly what HttpRequestConverter / TimerRequestConverter return (as in the
    worker), and an HttpResponse goes back through HttpResponseConverter (cookies become Set-Cookie headers
    again). Queue messages: tests/unit/funchost/test_funchost_queue_settle.py."""
    made: dict[str, list[object]] = {"http": [], "timer": [], "response": []}

    def spy(converter: type, method: str, key: str) -> None:
        original = getattr(converter, method)

        def recording(cls: type, /, *args: object, **kwargs: object) -> object:
            result = original(*args, **kwargs)
            made[key].append(result)
            return result

        monkeypatch.setattr(converter, method, classmethod(recording))

    spy(HttpRequestConverter, "decode", "http")
    spy(TimerRequestConverter, "decode", "timer")
    spy(HttpResponseConverter, "encode", "response")
    received: dict[str, object] = {}
    done = asyncio.Event()
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="things/{name}", methods=["POST"])
    async def things(req: func.HttpRequest) -> func.HttpResponse:
        received["http"] = req
        return func.HttpResponse("{}", mimetype="application/json", headers={"Set-Cookie": "a=1; Path=/"})

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
    async def yearly(timer: func.TimerRequest) -> None:
        received["timer"] = timer
        done.set()

    host = FuncHost(app, app_dir=tmp_path, env=ENV)
    await host.start()
    try:
        async with httpx.AsyncClient(base_url=host.base_url) as client:
            response = await client.post("/api/things/ada?x=1", content=b'{"k": 1}', headers={"X-Sample": "yes"})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["set-cookie"].startswith("a=1")
            assert (await client.post("/admin/functions/yearly", json={"input": ""}, headers=ADMIN)).status_code == 202
            await asyncio.wait_for(done.wait(), 10)
        request = received["http"]
        assert made["http"] == [request]
        assert type(request) is azure.functions.http.HttpRequest
        assert isinstance(request, func.HttpRequest)
        assert request.route_params == {"name": "ada"}
        assert request.params == {"x": "1"}
        assert request.headers["x-sample"] == "yes"
        assert request.headers["content-length"] == "8"
        assert request.get_json() == {"k": 1}
        assert made["timer"] == [received["timer"]]
        assert type(received["timer"]) is azure.functions.timer.TimerRequest
        assert len(made["response"]) == 1
    finally:
        await host.stop()
