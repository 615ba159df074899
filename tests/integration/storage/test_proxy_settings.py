"""The Storage clients look for a proxy only where one is configured (``proxy_options``), through Azurite:
without a proxy variable they ignore the environment's proxy settings; with one they go through the proxy."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.settings import Settings
from shared.storage_clients import proxy_options, queue_service, table_service

GRAPH = {"GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0", "GRAPH_AUTH_MODE": "static_token", "GRAPH_STATIC_TOKEN": "t"}


def test_proxy_is_read_only_when_a_proxy_variable_is_set() -> None:
    assert proxy_options({}) == {"use_env_settings": False}
    assert proxy_options({"HTTPS_PROXY": ""}) == {"use_env_settings": False}
    assert proxy_options({"NO_PROXY": "localhost"}) == {"use_env_settings": False}
    assert proxy_options({"https_proxy": "http://proxy:3128"}) == {"use_env_settings": True}
    assert proxy_options({"HTTP_PROXY": "http://proxy:3128"}) == {"use_env_settings": True}


class _Proxy:
    """A stand-in proxy: counts the connections it gets and closes them unanswered."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _handle(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def __aenter__(self) -> _Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture(name="proxy")
async def _proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_Proxy]:
    async with _Proxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield proxy


async def test_clients_ignore_the_environment_unless_told(storage_connection_string: str, proxy: _Proxy) -> None:
    settings = Settings.from_env({**GRAPH, "AzureWebJobsStorage": storage_connection_string})
    name = "px" + uuid.uuid4().hex[:12]

    async with table_service(settings, None, **proxy_options({})) as tables:  # the app without a proxy setting
        await tables.create_table(name)
    async with queue_service(settings, None, **proxy_options({})) as queues:
        await queues.get_queue_client(name).create_queue()
    assert proxy.connections == 0

    async with table_service(settings, None, **proxy_options(os.environ)) as tables:  # a proxy is configured
        with pytest.raises(ServiceRequestError):
            await tables.delete_table(name)
    assert proxy.connections >= 1
