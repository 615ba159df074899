"""FuncHost in the pytest loop: limits the host enforces (function timeout, request body size)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import azure.functions as func
import httpx
import pytest

from devtools.funchost import FuncHost

ENV = {"FUNCHOST_FUNCTION_KEY": "f", "FUNCHOST_MASTER_KEY": "m"}


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
