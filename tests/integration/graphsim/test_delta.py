"""Delta queries through the real GraphServiceClient: initial rounds, change rounds, 410."""

from __future__ import annotations

from typing import Any

import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from devtools.graphsim.client import SimControl

pytestmark = pytest.mark.integration


async def _round(builder: Any, first_url: str | None = None) -> tuple[list[Any], str, int]:
    """Follow nextLinks until the deltaLink: (items, deltaLink, pages)."""
    page = await (builder.with_url(first_url).get() if first_url else builder.get())
    items, pages = list(page.value), 1
    while page.odata_next_link:
        page = await builder.with_url(page.odata_next_link).get()
        items += page.value
        pages += 1
    assert page.odata_delta_link
    return items, page.odata_delta_link, pages


async def test_users_delta_initial_round_then_only_changes(graph_client: Any, graphsim: SimControl) -> None:
    """The first round returns every user over pages; the next returns updates and removals."""
    builder = graph_client.users.delta
    users, delta_link, _ = await _round(builder)
    assert {u.id for u in users} == {u["id"] for u in graphsim.users()}

    changed, removed = graphsim.users()[1], graphsim.users()[2]
    graphsim.update_user(changed["id"], jobTitle="Chief Simulator")
    graphsim.delete_user(removed["id"])
    created = graphsim.create_user(displayName="New Hire", userPrincipalName="new.hire@contoso.onmicrosoft.com")

    items, next_delta, _ = await _round(builder, delta_link)
    by_id = {u.id: u for u in items}
    assert set(by_id) == {changed["id"], removed["id"], created["id"]}
    assert by_id[changed["id"]].job_title == "Chief Simulator"
    assert by_id[removed["id"]].additional_data["@removed"] == {"reason": "changed"}
    assert by_id[created["id"]].display_name == "New Hire"

    quiet, _, _ = await _round(builder, next_delta)
    assert quiet == []


async def test_users_delta_returns_an_update_as_id_plus_the_changed_properties(
    graph_client: Any, graphsim: SimControl
) -> None:
    """As Graph does for directory objects: an updated user is its id and the properties that changed (two
    updates in one round: both properties); a created one is whole; the initial round is whole."""
    builder = graph_client.users.delta
    _, delta_link, _ = await _round(builder)
    user = graphsim.users()[1]
    graphsim.update_user(user["id"], jobTitle="Tester")
    graphsim.update_user(user["id"], userPrincipalName="renamed@contoso.onmicrosoft.com")

    items, _, _ = await _round(builder, delta_link)

    [item] = items
    assert item.id == user["id"]
    assert item.job_title == "Tester"
    assert item.user_principal_name == "renamed@contoso.onmicrosoft.com"
    assert item.display_name is None
    assert item.surname is None


async def test_users_delta_pages_honour_maxpagesize(graph_client: Any, graphsim: SimControl) -> None:
    """Prefer: odata.maxpagesize splits the initial round into several nextLink pages."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    page = await graph_client.users.delta.get(RequestConfiguration(headers={"Prefer": "odata.maxpagesize=20"}))
    assert len(page.value) == 20
    assert page.odata_next_link
    assert not page.odata_delta_link
    _, _, pages = await _round(graph_client.users.delta, page.odata_next_link)
    assert pages == 1  # the remaining 30 of 50 fit one page of the default size (100)


async def test_mail_delta_reports_new_and_deleted_messages(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """Inbox delta: the initial round is the inbox; then new messages and @removed deletions."""
    builder = graph_client.users.by_user_id(user["id"]).mail_folders.by_mail_folder_id("inbox").messages.delta
    items, delta_link, pages = await _round(builder)
    inbox = graphsim.messages(user["id"], folder="inbox")
    assert {m.id for m in items} == {m["id"] for m in inbox}
    assert pages == -(-len(inbox) // 10)  # Outlook's delta page size is 10 by default

    created = graphsim.create_message(user["id"], count=2)
    graphsim.delete_message(user["id"], inbox[0]["id"])
    graphsim.update_message(user["id"], inbox[1]["id"], folder="archive")  # moved out of the inbox
    changes, _, _ = await _round(builder, delta_link)
    by_id = {m.id: m for m in changes}
    assert set(by_id) == {created[0]["id"], created[1]["id"], inbox[0]["id"], inbox[1]["id"]}
    assert by_id[inbox[0]["id"]].additional_data["@removed"] == {"reason": "deleted"}
    assert by_id[inbox[1]["id"]].additional_data["@removed"] == {"reason": "deleted"}
    assert by_id[created[0]["id"]].subject == created[0]["subject"]


async def test_invalidated_delta_token_is_410_for_users(graph_client: Any, graphsim: SimControl) -> None:
    """After invalidation the deltaLink answers 410 Gone (resyncRequired), an ODataError."""
    _, delta_link, _ = await _round(graph_client.users.delta)
    graphsim.invalidate_delta("users")
    with pytest.raises(ODataError) as caught:
        await graph_client.users.delta.with_url(delta_link).get()
    assert caught.value.response_status_code == 410
    assert caught.value.error.code == "resyncRequired"
    users, _, _ = await _round(graph_client.users.delta)  # a fresh round works again
    assert users


async def test_invalidated_delta_token_is_410_for_mail(
    graph_client: Any, graphsim: SimControl, user: dict[str, Any]
) -> None:
    """Mail delta tokens answer 410 SyncStateNotFound once invalidated."""
    builder = graph_client.users.by_user_id(user["id"]).mail_folders.by_mail_folder_id("inbox").messages.delta
    _, delta_link, _ = await _round(builder)
    graphsim.invalidate_delta("mail")
    with pytest.raises(ODataError) as caught:
        await builder.with_url(delta_link).get()
    assert caught.value.response_status_code == 410
    assert caught.value.error.code == "SyncStateNotFound"
