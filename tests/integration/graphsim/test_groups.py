"""Groups in the simulator through the real GraphServiceClient: members, transitive members, the members delta
of one group, and users without a mailbox (what a mailbox fleet reads)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from devtools.graphsim.client import SimControl
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

pytestmark = pytest.mark.integration


async def _all_pages(builder: Any) -> list[Any]:
    page = await builder.get()
    items = list(page.value)
    while page.odata_next_link:
        page = await builder.with_url(page.odata_next_link).get()
        items += page.value
    return items


async def _delta_round(graph_client: Any, group_id: str, url: str | None = None) -> tuple[dict[str, bool], str]:
    """One round of the group's members delta: member id -> removed, and the next deltaLink."""
    builder = graph_client.groups.delta
    if url is None:
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            filter=f"id eq '{group_id}'", select=["members"]
        )
        page = await builder.get(RequestConfiguration(query_parameters=query))
    else:
        page = await builder.with_url(url).get()
    seen: dict[str, bool] = {}
    while True:
        for group in page.value:
            assert group.id == group_id
            for member in group.additional_data.get("members@delta", []):
                seen[str(member["id"])] = "@removed" in member
        if not page.odata_next_link:
            break
        page = await builder.with_url(page.odata_next_link).get()
    assert page.odata_delta_link
    return seen, page.odata_delta_link


async def test_members_transitive_members_and_the_user_cast(graph_client: Any, graphsim: SimControl) -> None:
    users = [u["id"] for u in graphsim.users()[:6]]
    inner = graphsim.create_group(members=users[4:6], displayName="Inner")
    outer = graphsim.create_group(members=[*users[:4], inner["id"]], displayName="Outer")
    group = graph_client.groups.by_group_id(outer["id"])

    direct = await _all_pages(group.members)
    assert {m.id for m in direct} == {*users[:4], inner["id"]}
    assert {m.id for m in await _all_pages(group.members.graph_user)} == set(users[:4])
    assert {m.id for m in await _all_pages(group.transitive_members.graph_user)} == set(users)


async def test_members_page_over_next_links(graph_client: Any, graphsim: SimControl) -> None:
    users = [u["id"] for u in graphsim.users()[:7]]
    group = graphsim.create_group(members=users)
    builder = graph_client.groups.by_group_id(group["id"]).members.graph_user
    first = await builder.get(
        RequestConfiguration(query_parameters=builder.GraphUserRequestBuilderGetQueryParameters(top=3))
    )
    assert len(first.value) == 3
    assert first.odata_next_link
    assert {m.id for m in await _all_pages(builder)} == set(users)


async def test_members_delta_lists_everyone_then_only_who_joined_or_left(
    graph_client: Any, graphsim: SimControl
) -> None:
    users = [u["id"] for u in graphsim.users()[:8]]
    group = graphsim.create_group(members=users[:5])
    initial, delta_link = await _delta_round(graph_client, group["id"])
    assert initial == dict.fromkeys(users[:5], False)

    graphsim.add_member(group["id"], users[5])
    graphsim.remove_member(group["id"], users[0])
    graphsim.delete_user(users[1])  # a deleted user leaves every group
    changes, delta_link = await _delta_round(graph_client, group["id"], delta_link)
    assert changes == {users[5]: False, users[0]: True, users[1]: True}
    assert (await _delta_round(graph_client, group["id"], delta_link))[0] == {}


async def test_groups_delta_beyond_one_group_is_a_clear_400(
    graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    headers = {"Authorization": f"Bearer {GRAPHSIM_TOKEN}"}
    async with httpx.AsyncClient(base_url=graphsim_server.base_url, headers=headers) as client:
        response = await client.get("/groups/delta", params={"$select": "displayName"})
    assert response.status_code == 400
    assert "one group" in response.json()["error"]["message"]


async def test_a_user_without_a_mailbox_is_outlooks_404(graph_client: Any, graphsim: SimControl) -> None:
    """Mail reads and mail subscriptions answer ``MailboxNotEnabledForRESTAPI``; the user still exists; a
    licence brings the mailbox back."""
    user = graphsim.users()[0]["id"]
    graphsim.set_mailbox(user, False)
    with pytest.raises(ODataError) as raised:
        await graph_client.users.by_user_id(user).messages.get()
    assert (raised.value.response_status_code, raised.value.error.code) == (404, "MailboxNotEnabledForRESTAPI")
    assert (await graph_client.users.by_user_id(user).get()).id == user
    graphsim.set_mailbox(user, True)
    assert (await graph_client.users.by_user_id(user).messages.get()).value
