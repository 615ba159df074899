"""``$batch`` through msgraph_core's BatchRequestContent / BatchRequestBuilder (and raw JSON
for what the SDK helpers cannot express)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import ResponseHandlerOption
from msgraph.generated.models.user import User
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent

from devtools.graphsim.client import SimControl
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

pytestmark = pytest.mark.integration


async def test_sdk_batch_returns_each_inner_status(graph_client: Any, graphsim: SimControl) -> None:
    """Inner requests run through the normal routes; the SDK reads statuses, headers and bodies."""
    users = graphsim.users()
    ok = BatchRequestItem(graph_client.users.by_user_id(users[0]["id"]).to_get_request_information(), id="1")
    missing = BatchRequestItem(graph_client.users.by_user_id("nobody@nowhere").to_get_request_information(), id="2")
    content = BatchRequestContent({"1": ok, "2": missing})
    response = await BatchRequestBuilder(graph_client.request_adapter).post(content)
    assert response.get_response_status_codes() == {"1": 200, "2": 404}
    assert response.responses["1"].content_type.startswith("application/json")
    assert graphsim.count("GET /users/{id}") == 2
    assert graphsim.count("POST /$batch") == 1


async def test_batch_bodies_are_readable_with_a_native_response_handler(
    graph_client: Any, graphsim: SimControl
) -> None:
    """Graph (and the simulator) send inner JSON bodies as objects, which the SDK's typed
    BatchResponseItem drops (body None); posting with NativeResponseHandler gives the JSON."""
    uid = graphsim.users()[0]["id"]
    item = BatchRequestItem(graph_client.users.by_user_id(uid).to_get_request_information(), id="1")
    builder = BatchRequestBuilder(graph_client.request_adapter)
    info = await builder.to_post_request_information(BatchRequestContent({"1": item}))
    info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
    raw = await graph_client.request_adapter.send_async(info, BatchResponseContent, {})
    [inner] = raw.json()["responses"]
    assert inner["status"] == 200
    assert inner["body"]["id"] == uid
    user = User(id=inner["body"]["id"], display_name=inner["body"]["displayName"])
    assert user.display_name == graphsim.users()[0]["displayName"]


async def test_inner_request_can_be_throttled_while_the_envelope_is_200(
    graph_client: Any, graphsim: SimControl
) -> None:
    """A fault rule applies to inner requests: one is 429 with Retry-After, the batch is 200."""
    users = graphsim.users()
    graphsim.add_fault(f"^/users/{users[1]['id']}$", 429, retry_after=7)
    items = {
        str(n): BatchRequestItem(graph_client.users.by_user_id(u["id"]).to_get_request_information(), id=str(n))
        for n, u in enumerate(users[:3])
    }
    response = await BatchRequestBuilder(graph_client.request_adapter).post(BatchRequestContent(items))
    assert response.get_response_status_codes() == {"0": 200, "1": 429, "2": 200}
    throttled = response.responses["1"]
    assert throttled.headers["Retry-After"] == "7"
    assert graphsim.requests(status=200, path_regex=r"^/\$batch$")


def _raw_batch(server: GraphSimServer, body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/$batch",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {GRAPHSIM_TOKEN}", "Content-Type": "application/json"},
    )


def test_depends_on_failure_gives_424(graphsim_server: GraphSimServer, graphsim: SimControl) -> None:
    """A dependent of a failed request is not run and answers 424 (raw JSON: the SDK writes
    ``depends_on`` instead of Graph's ``dependsOn``)."""
    uid = graphsim.users()[0]["id"]
    response = _raw_batch(
        graphsim_server,
        {
            "requests": [
                {"id": "a", "method": "GET", "url": "/users/missing-user"},
                {"id": "b", "method": "GET", "url": f"/users/{uid}", "dependsOn": ["a"]},
                {"id": "c", "method": "GET", "url": f"/users/{uid}/messages?$top=2&$select=subject"},
            ]
        },
    )
    assert response.status_code == 200
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert (by_id["a"]["status"], by_id["b"]["status"], by_id["c"]["status"]) == (404, 424, 200)
    assert len(by_id["c"]["body"]["value"]) == 2
    assert graphsim.count("GET /users/{id}") == 1  # b never ran


def test_more_than_twenty_requests_is_400(graphsim_server: GraphSimServer, graphsim: SimControl) -> None:
    """Graph caps a batch at 20 requests."""
    requests = [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]
    response = _raw_batch(graphsim_server, {"requests": requests})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
