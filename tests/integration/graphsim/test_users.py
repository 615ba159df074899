"""Users through the real GraphServiceClient: by id, by UPN, lists with $select and paging."""

from __future__ import annotations

from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator

from devtools.graphsim.client import SimControl

pytestmark = pytest.mark.integration


async def test_get_user_by_id_returns_the_default_property_set(graph_client: Any, user: dict[str, Any]) -> None:
    """GET /users/{id} parses into a User with Graph's default properties only."""
    found = await graph_client.users.by_user_id(user["id"]).get()
    assert found.id == user["id"]
    assert found.display_name == user["displayName"]
    assert found.user_principal_name == user["userPrincipalName"]
    assert found.business_phones == user["businessPhones"]
    assert found.department is None  # not in the default set


async def test_get_user_by_upn_is_case_insensitive(graph_client: Any, user: dict[str, Any]) -> None:
    """GET /users/{UPN} finds the user whatever the case of the UPN."""
    found = await graph_client.users.by_user_id(user["userPrincipalName"].upper()).get()
    assert found.id == user["id"]


async def test_get_user_with_select_returns_only_selected_properties(graph_client: Any, user: dict[str, Any]) -> None:
    """$select on a single user returns id plus the selection (non-default properties too)."""
    query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["displayName", "department"])
    found = await graph_client.users.by_user_id(user["id"]).get(RequestConfiguration(query_parameters=query))
    assert (found.id, found.display_name, found.department) == (user["id"], user["displayName"], user["department"])
    assert found.mail is None


async def test_unknown_user_is_an_odata_404(graph_client: Any) -> None:
    """An unknown id surfaces as ODataError 404 Request_ResourceNotFound with innerError ids."""
    with pytest.raises(ODataError) as caught:
        await graph_client.users.by_user_id("00000000-0000-4000-8000-000000000000").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error.code == "Request_ResourceNotFound"
    assert caught.value.error.inner_error.request_id


async def test_list_users_with_select_pages_through_every_user(graph_client: Any, graphsim: SimControl) -> None:
    """$top + $select pages over nextLink ($skiptoken) until every user was returned once."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id", "displayName"], top=7)
    first = await graph_client.users.get(RequestConfiguration(query_parameters=query))
    assert len(first.value) == 7
    assert "$skiptoken" in first.odata_next_link.replace("%24", "$")
    assert first.value[0].mail is None  # not selected
    seen: list[str] = []
    iterator = PageIterator(first, graph_client.request_adapter)

    def collect(user: Any) -> bool:
        seen.append(user.id)
        return True

    await iterator.iterate(collect)
    assert seen == [u["id"] for u in graphsim.users()]


async def test_same_seed_gives_the_same_tenant(graphsim: SimControl) -> None:
    """Resetting with the same seed reproduces ids and data; another seed changes them."""
    before = graphsim.users()
    messages = graphsim.messages(before[0]["id"])
    graphsim.reset()
    assert graphsim.users() == before
    assert graphsim.messages(before[0]["id"]) == messages
    graphsim.reset(seed=7, users=5, messages_per_user=3)
    other = graphsim.users()
    assert len(other) == 5
    assert other[0]["id"] != before[0]["id"]
    assert len(graphsim.messages(other[0]["id"])) == 3
