"""Bad input on the Graph surface gets Graph's error shape and status, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from devtools.graphsim.client import SimControl, SimControlError
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer, start_graphsim, stop_graphsim

pytestmark = pytest.mark.integration


@pytest.fixture(name="http")
def _http(graphsim_server: GraphSimServer, graphsim: SimControl) -> Iterator[httpx.Client]:
    """A plain HTTP client on the (reset) simulator's Graph base URL, authenticated."""
    with httpx.Client(
        base_url=graphsim_server.base_url + "/", headers={"Authorization": f"Bearer {GRAPHSIM_TOKEN}"}
    ) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "innerError"}
    assert response.headers["request-id"] == body["innerError"]["request-id"]
    return body


@pytest.mark.parametrize("top", [0, 1000, "ten"])
async def test_invalid_user_top_is_400(graph_client: Any, top: Any) -> None:
    """Users $top must be an integer within 1..999."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(top=top)
    with pytest.raises(ODataError) as caught:
        await graph_client.users.get(RequestConfiguration(query_parameters=query))
    assert caught.value.response_status_code == 400


def test_unknown_route_is_404_in_graph_shape(http: httpx.Client) -> None:
    """An unknown segment is a Graph-shaped 404 naming the segment."""
    response = http.get("sites")
    assert response.status_code == 404
    assert "sites" in _error(response)["message"]


def test_wrong_method_is_405(http: httpx.Client) -> None:
    """A known path with an unsupported method is 405."""
    assert http.delete("users").status_code == 405


def test_missing_token_is_401_invalid_authentication_token(graphsim_server: GraphSimServer) -> None:
    """No bearer token: 401 InvalidAuthenticationToken."""
    response = httpx.get(f"{graphsim_server.base_url}/users")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_pinned_token_rejects_other_tokens() -> None:
    """With --token only that exact bearer token is accepted."""
    server = start_graphsim("--token", "only-this", "--users", "3")
    try:
        wrong = httpx.get(f"{server.base_url}/users", headers={"Authorization": "Bearer other"})
        right = httpx.get(f"{server.base_url}/users", headers={"Authorization": "Bearer only-this"})
        assert wrong.status_code == 401
        assert right.status_code == 200
        assert len(right.json()["value"]) == 3
    finally:
        stop_graphsim(server.process)


def test_client_request_id_is_echoed(http: httpx.Client) -> None:
    """client-request-id comes back as sent, request-id is Graph's own."""
    response = http.get("users", params={"$top": 1}, headers={"client-request-id": "abc-123"})
    assert response.headers["client-request-id"] == "abc-123"
    assert response.headers["request-id"] != "abc-123"
    assert response.headers["Content-Type"].startswith("application/json")


def test_unknown_select_property_is_400(http: httpx.Client) -> None:
    """$select of a property the type does not have is 400."""
    assert http.get("users", params={"$select": "id,shoeSize"}).status_code == 400


def test_unsimulated_query_options_are_refused(http: httpx.Client) -> None:
    """$filter/$search are not simulated: a clear 400 beats a silently wrong answer."""
    response = http.get("users", params={"$filter": "startswith(displayName,'A')"})
    assert response.status_code == 400
    assert "does not simulate" in _error(response)["message"]


def test_messages_of_unknown_user_is_404(http: httpx.Client) -> None:
    """A mailbox of an unknown user is 404 Request_ResourceNotFound."""
    response = http.get("users/ghost@contoso.onmicrosoft.com/messages")
    assert response.status_code == 404
    assert _error(response)["code"] == "Request_ResourceNotFound"


def test_control_api_rejects_bad_fault_rules(graphsim: SimControl) -> None:
    """Invalid rules are 400 from the control API, not silently ignored."""
    for bad in ({"path": "("}, {"path": ".*", "status": 99}, {"path": ".*", "probability": 2}, {"nope": 1}):
        with pytest.raises(SimControlError) as caught:
            graphsim._call("POST", "/faults", json=bad)
        assert caught.value.status == 400
