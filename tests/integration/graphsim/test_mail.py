"""Mail through the real GraphServiceClient: paging with PageIterator, $select, folders, ids."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator

from devtools.graphsim.client import SimControl, SimControlError

pytestmark = pytest.mark.integration


def _config(**query: Any) -> RequestConfiguration[Any]:
    return RequestConfiguration(
        query_parameters=MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(**query)
    )


async def test_page_iterator_walks_every_message_newest_first(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """PageIterator follows the $skip nextLinks to the end; order is receivedDateTime desc."""
    first = await graph_client.users.by_user_id(user["id"]).messages.get(_config(top=7))
    assert len(first.value) == 7
    assert "%24skip=7" in first.odata_next_link
    received: list[Any] = []

    def collect(message: Any) -> bool:
        received.append(message)
        return True

    await PageIterator(first, graph_client.request_adapter).iterate(collect)
    expected = sorted(graphsim.messages(user["id"]), key=lambda m: (m["receivedDateTime"], m["id"]), reverse=True)
    assert [m.id for m in received] == [m["id"] for m in expected]
    assert graphsim.count("GET /users/{user}/messages") == 5  # 30 messages / 7 per page


async def test_default_page_is_ten_full_messages(graph_client: Any, user: dict[str, Any]) -> None:
    """Without $top Graph returns 10 messages with every default field parsed."""
    page = await graph_client.users.by_user_id(user["id"]).messages.get()
    assert len(page.value) == 10
    message = page.value[0]
    assert message.subject
    assert message.body.content.startswith("<html>")
    assert message.from_.email_address.address
    assert message.to_recipients[0].email_address.address == user["mail"]
    assert message.received_date_time.tzinfo is not None
    assert message.additional_data.get("@odata.etag", "").startswith('W/"')


async def test_message_ids_look_like_graph_ids(graph_client: Any, graphsim: SimControl, user: dict[str, Any]) -> None:
    """Ids are long URL-safe base64 with '-', '_' and '=', and round-trip through the SDK's URLs."""
    message_id = graphsim.messages(user["id"])[0]["id"]
    assert len(message_id) > 100
    assert re.fullmatch(r"[A-Za-z0-9_-]+=", message_id)
    assert "-" in message_id
    assert "_" in message_id
    found = await graph_client.users.by_user_id(user["id"]).messages.by_message_id(message_id).get()
    assert found.id == message_id


async def test_select_limits_message_fields(graph_client: Any, user: dict[str, Any]) -> None:
    """$select returns id + the selection (the etag annotation stays)."""
    page = await graph_client.users.by_user_id(user["id"]).messages.get(_config(select=["subject"], top=3))
    assert all(m.subject and m.id and m.body is None for m in page.value)


async def test_folder_messages_by_well_known_name(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """/mailFolders/inbox/messages lists only the inbox."""
    inbox = graphsim.messages(user["id"], folder="inbox")
    builder = graph_client.users.by_user_id(user["id"]).mail_folders.by_mail_folder_id("inbox")
    page = await builder.messages.get(
        RequestConfiguration(query_parameters=builder.messages.MessagesRequestBuilderGetQueryParameters(top=1000))
    )
    assert {m.id for m in page.value} == {m["id"] for m in inbox}
    folder = await builder.get()
    assert folder.total_item_count == len(inbox)
    assert folder.display_name == "Inbox"


async def test_unknown_message_is_error_item_not_found(graph_client: Any, user: dict[str, Any]) -> None:
    """An unknown message id is 404 ErrorItemNotFound."""
    with pytest.raises(ODataError) as caught:
        await graph_client.users.by_user_id(user["id"]).messages.by_message_id("AAMkAGnope=").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error.code == "ErrorItemNotFound"


@pytest.mark.parametrize("top", [0, 1001])
async def test_top_out_of_range_is_400(graph_client: Any, user: dict[str, Any], top: int) -> None:
    """Messages $top must be within 1..1000."""
    with pytest.raises(ODataError) as caught:
        await graph_client.users.by_user_id(user["id"]).messages.get(_config(top=top))
    assert caught.value.response_status_code == 400


async def test_created_message_is_listed_first(graph_client: Any, graphsim: SimControl, user: dict[str, Any]) -> None:
    """A message created through the control API is the newest one in the mailbox."""
    [created] = graphsim.create_message(user["id"], subject="Fresh off the press")
    page = await graph_client.users.by_user_id(user["id"]).messages.get(_config(top=1))
    assert page.value[0].id == created["id"]
    assert page.value[0].subject == "Fresh off the press"


async def test_skiptoken_paging_walks_every_message_through_opaque_tokens(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """With ``message_paging="skiptoken"`` nextLinks carry an opaque ``$skiptoken`` (no ``$skip``); the
    SDK's PageIterator, which follows nextLinks as they are, still reaches every message once."""
    graphsim.configure(message_paging="skiptoken")
    first = await graph_client.users.by_user_id(user["id"]).messages.get(_config(top=7))
    assert "%24skiptoken=" in first.odata_next_link
    assert "%24skip=" not in first.odata_next_link
    received: list[Any] = []
    await PageIterator(first, graph_client.request_adapter).iterate(lambda m: received.append(m) or True)
    expected = sorted(graphsim.messages(user["id"]), key=lambda m: (m["receivedDateTime"], m["id"]), reverse=True)
    assert [m.id for m in received] == [m["id"] for m in expected]
    assert graphsim.count("GET /users/{user}/messages") == 5  # 30 messages / 7 per page


async def test_a_skiptoken_of_another_mailbox_or_a_mangled_one_is_400(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """A token is bound to its listing: another user's, or one whose '+' was not percent-encoded, fails."""
    graphsim.configure(message_paging="skiptoken")
    first = await graph_client.users.by_user_id(user["id"]).messages.get(_config(top=7))
    other = graphsim.users()[1]["id"]
    builder = graph_client.users.by_user_id(other).messages
    with pytest.raises(ODataError) as caught:
        await builder.with_url(first.odata_next_link.replace(user["id"], other)).get()
    assert caught.value.response_status_code == 400
    mangled = first.odata_next_link.replace("%2B", "+")
    assert mangled != first.odata_next_link
    with pytest.raises(ODataError):
        await graph_client.users.by_user_id(user["id"]).messages.with_url(mangled).get()


def test_message_paging_setting_is_validated_and_reset(graphsim: SimControl) -> None:
    """Only "skip" and "skiptoken" are accepted; a reset goes back to the startup value ("skip")."""
    assert graphsim.configure(message_paging="skiptoken")["message_paging"] == "skiptoken"
    with pytest.raises(SimControlError):
        graphsim.configure(message_paging="cursor")
    with pytest.raises(SimControlError):
        graphsim.configure(message_paging=1)
    graphsim.reset()
    assert graphsim.config()["message_paging"] == "skip"
