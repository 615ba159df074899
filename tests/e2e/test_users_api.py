"""Users and mail API end to end: harness → app → Table cache (Azurite) → resilient Graph path → simulator."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import pytest

from devtools.graphsim.client import SimControl
from shared.api.params import MESSAGE_RESOURCE_FIELDS
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink, subscribe
from tests.fixtures.graphsim import GraphSimServer

USER_ROUTE = "GET /users/{id}"
MESSAGES_ROUTE = "GET /users/{user}/messages"  # the simulator's route template
MESSAGE_ROUTE = "GET /users/{user}/messages/{message_id}"


def _a_user(graphsim: SimControl, index: int = 0) -> dict[str, Any]:
    return graphsim.users()[index]


def test_user_miss_then_hits_without_a_second_graph_call(app: RunningApp, graphsim: SimControl) -> None:
    """The first read is a miss (one Graph call), the next ones hit the cache; Graph sees no second call."""
    user = _a_user(graphsim)
    first = app.get(f"/api/users/{user['id']}")
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "miss"
    body = first.json()
    assert body["id"] == user["id"]
    assert body["displayName"] == user["displayName"]
    assert set(body) >= {"givenName", "surname", "mail", "businessPhones", "department"}

    second = app.get(f"/api/users/{user['id']}")
    assert second.headers["X-Cache"] == "hit-l1"
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Cache-Control"].startswith("private, max-age=")
    assert graphsim.count(USER_ROUTE) == 1


def test_upn_and_guid_share_one_cache_entry(app: RunningApp, graphsim: SimControl) -> None:
    """A user read by UPN costs one Graph call; reading it by GUID afterwards is a cache hit."""
    user = _a_user(graphsim, 1)
    by_upn = app.get(f"/api/users/{user['userPrincipalName'].upper()}")
    assert by_upn.status_code == 200
    by_guid = app.get(f"/api/users/{user['id']}")
    assert by_guid.headers["X-Cache"].startswith("hit")
    assert by_upn.json() == by_guid.json()
    assert graphsim.count(USER_ROUTE) == 1


def test_l2_serves_a_second_instance(start_app: StartApp, graphsim: SimControl) -> None:
    """Two app instances share the Table cache: the second instance's first read is hit-l2."""
    first = start_app()
    second = start_app(env=first.env)
    user = _a_user(graphsim, 2)
    assert first.get(f"/api/users/{user['id']}").headers["X-Cache"] == "miss"
    assert second.get(f"/api/users/{user['id']}").headers["X-Cache"] == "hit-l2"
    assert graphsim.count(USER_ROUTE) == 1


def test_if_none_match_gets_304(app: RunningApp, graphsim: SimControl) -> None:
    """A client that sends the ETag back gets 304 with no body."""
    user = _a_user(graphsim, 3)
    etag = app.get(f"/api/users/{user['id']}").headers["ETag"]
    again = app.get(f"/api/users/{user['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert app.get(f"/api/users/{user['id']}", headers={"If-None-Match": '"other"'}).status_code == 200


async def test_100_concurrent_cold_requests_make_one_graph_call(app: RunningApp, graphsim: SimControl) -> None:
    """100 concurrent first reads of one user are answered from one Graph call (single-flight)."""
    user = _a_user(graphsim, 4)
    async with httpx.AsyncClient(
        base_url=app.host.base_url, headers={"x-functions-key": app.host.function_key}, timeout=30
    ) as client:
        responses = await asyncio.gather(*(client.get(f"/api/users/{user['id']}") for _ in range(100)))
    assert {r.status_code for r in responses} == {200}
    assert graphsim.count(USER_ROUTE) == 1


def test_unknown_user_is_404_and_cached_briefly(app: RunningApp, graphsim: SimControl) -> None:
    """Graph's 404 becomes our 404 in the API's error shape; a repeat within the negative TTL costs no call."""
    missing = "00000000-0000-0000-0000-000000000001"
    first = app.get(f"/api/users/{missing}")
    assert first.status_code == 404
    assert first.json()["error"]["code"] == "not_found"
    assert app.get(f"/api/users/{missing}").status_code == 404
    assert graphsim.count(USER_ROUTE) == 1


def test_outage_serves_cached_user_stale_and_uncached_user_503(start_app: StartApp, graphsim: SimControl) -> None:
    """With Graph failing (503), a cached user is served marked stale; an uncached one gets 503 + Retry-After."""
    app = start_app(CACHE_USER_TTL_SECONDS="1", CACHE_L1_TTL_SECONDS="0.1")
    cached, uncached = _a_user(graphsim, 5), _a_user(graphsim, 6)
    assert app.get(f"/api/users/{cached['id']}").status_code == 200
    time.sleep(4.2)  # past the hard TTL (4 x 1 s): only stale-on-error can answer now
    graphsim.add_fault(path=r"^/users", status=503)

    stale = app.get(f"/api/users/{cached['id']}")
    assert stale.status_code == 200
    assert stale.headers["X-Cache"] == "stale"
    assert stale.headers["Cache-Control"] == "private, max-age=0"
    assert int(stale.headers["Age"]) >= 4

    failed = app.get(f"/api/users/{uncached['id']}")
    assert failed.status_code == 503
    assert int(failed.headers["Retry-After"]) >= 1
    assert failed.json()["error"]["code"] in {"upstream_unavailable", "circuit_open"}
    assert "Traceback" not in failed.text


@pytest.mark.parametrize("paging", ["skip", "skiptoken"])
def test_message_paging_walks_every_page(start_app: StartApp, graphsim: SimControl, paging: str) -> None:
    """Following next_cursor returns every message of a 40-message mailbox exactly once, newest first,
    then next_cursor is null: whether Graph's nextLinks carry $skip or an opaque $skiptoken."""
    graphsim.reset(messages_per_user=40)
    graphsim.configure(message_paging=paging)
    app = start_app()
    user = _a_user(graphsim, 7)
    expected = {m["id"] for m in graphsim.messages(user["id"])}
    assert len(expected) == 40
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        params = {"top": "5"} if cursor is None else {"cursor": cursor}
        page = app.get(f"/api/users/{user['id']}/messages", params=params)
        assert page.status_code == 200, page.text
        seen.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [m["id"] for m in seen if m["id"] in expected] == [m["id"] for m in seen]
    assert {m["id"] for m in seen} == expected
    assert len(seen) == len(expected)
    received = [m["receivedDateTime"] for m in seen]
    assert received == sorted(received, reverse=True)
    assert graphsim.count(MESSAGES_ROUTE) == 8
    skiptokens = ["$skiptoken" in request["query"] for request in graphsim.requests(route=MESSAGES_ROUTE)[1:]]
    assert skiptokens == [paging == "skiptoken"] * 7


def test_a_cursor_only_pages_the_mailbox_it_came_from(app: RunningApp, graphsim: SimControl) -> None:
    """A next_cursor of one mailbox used on another is a 400 and costs no message call there."""
    owner, other = _a_user(graphsim, 9), _a_user(graphsim, 10)
    cursor = app.get(f"/api/users/{owner['id']}/messages", params={"top": "5"}).json()["next_cursor"]
    graphsim.clear_requests()
    response = app.get(f"/api/users/{other['userPrincipalName']}/messages", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert graphsim.count(MESSAGES_ROUTE) == 0


def test_a_version_1_cursor_still_pages(app: RunningApp, graphsim: SimControl) -> None:
    """Cursors issued before nextLink queries were kept ($skip only) still answer the page they name."""
    user = _a_user(graphsim, 11)
    old = base64.urlsafe_b64encode(b'{"v":1,"s":5,"t":5,"f":["id"]}').decode().rstrip("=")
    page = app.get(f"/api/users/{user['id']}/messages", params={"cursor": old})
    assert page.status_code == 200, page.text
    everything = app.get(f"/api/users/{user['id']}/messages", params={"top": "10", "fields": "id"}).json()["items"]
    assert page.json()["items"] == everything[5:10]
    assert page.json()["next_cursor"] is not None


def test_a_upn_request_that_calls_graph_is_not_a_hit(app: RunningApp, graphsim: SimControl) -> None:
    """A user cached by GUID, then asked for by UPN: resolving the UPN costs a Graph call, so the answer
    says miss; the next UPN request needs no call and is a hit."""
    user = _a_user(graphsim, 12)
    assert app.get(f"/api/users/{user['id']}").headers["X-Cache"] == "miss"
    by_upn = app.get(f"/api/users/{user['userPrincipalName']}")
    assert by_upn.status_code == 200
    assert graphsim.count(USER_ROUTE) == 2
    assert by_upn.headers["X-Cache"] == "miss"
    again = app.get(f"/api/users/{user['userPrincipalName']}")
    assert again.headers["X-Cache"] == "hit-l1"
    assert graphsim.count(USER_ROUTE) == 2


def test_field_selection_is_an_allow_list(app: RunningApp, graphsim: SimControl) -> None:
    """fields picks from the allow-list (id always included); an unknown field is a 400."""
    user = _a_user(graphsim, 8)
    page = app.get(f"/api/users/{user['id']}/messages", params={"fields": "subject,isRead", "top": "2"})
    assert page.status_code == 200
    assert set(page.json()["items"][0]) == {"id", "subject", "isRead"}
    bad = app.get(f"/api/users/{user['id']}/messages", params={"fields": "body"})
    assert bad.status_code == 400


def test_one_message_is_cached_and_dropped_by_a_change_in_its_mailbox(
    app: RunningApp, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """``GET users/{id}/messages/{message_id}``: one Graph call then hits; an unknown id is a cached 404; a
    plain notification (no data) of any change in the mailbox drops it, and the next read sees the change."""
    user = _a_user(graphsim, 9)
    message = graphsim.messages(user["id"])[0]
    url = f"/api/users/{user['id']}/messages/{message['id']}"
    first, second = app.get(url), app.get(url)
    assert (first.status_code, first.headers["X-Cache"], second.headers["X-Cache"]) == (200, "miss", "hit-l1")
    assert first.json() == {name: message.get(name) for name in MESSAGE_RESOURCE_FIELDS}
    missing = [app.get(f"/api/users/{user['id']}/messages/AAMkNoSuchMessage=") for _ in range(2)]
    assert [r.status_code for r in missing] == [404, 404]
    assert graphsim.count(MESSAGE_ROUTE) == 2

    subscribe(app, graphsim_server.base_url, f"users/{user['id']}/messages", "updated")
    graphsim.update_message(user["id"], message["id"], subject="Renamed")
    graphsim.wait_deliveries_idle()
    EventSink(app).wait_for(1, settle=1.0)
    after = app.get(url)
    assert (after.headers["X-Cache"], after.json()["subject"]) == ("miss", "Renamed")


@pytest.mark.parametrize("message_id", ["a%2Fb", "%2e%2e", "a%00b", "A" * 600, "%3Cscript%3E", "m'1", "m%20x"])
def test_hostile_message_ids_are_rejected_before_graph(app: RunningApp, graphsim: SimControl, message_id: str) -> None:
    user = _a_user(graphsim, 9)
    response = app.get(f"/api/users/{user['id']}/messages/{message_id}")
    assert response.status_code in {400, 404}
    assert graphsim.count(MESSAGE_ROUTE) == 0


def test_messages_of_unknown_mailbox_is_404(app: RunningApp) -> None:
    """A mailbox Graph does not know is a 404 in the API's error shape."""
    response = app.get("/api/users/nobody@contoso.onmicrosoft.com/messages")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_function_key_is_required(app: RunningApp, graphsim: SimControl) -> None:
    """Without the function key the API answers 401 and makes no Graph call."""
    user = _a_user(graphsim)
    response = httpx.get(f"{app.host.base_url}/api/users/{user['id']}")
    assert response.status_code == 401
    assert graphsim.count(USER_ROUTE) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/users/..%2F..%2Fadmin",
        "/api/users/%2e%2e",
        "/api/users/a%5Cb",
        "/api/users/" + "a" * 10_000,
        "/api/users/" + "a" * 300 + "@contoso.com",
        "/api/users/alice%00@contoso.com",
        "/api/users/alice%0d%0a@contoso.com",
        "/api/users/%3Cscript%3E",
        "/api/users/alice@contoso.com%23frag",
        "/api/users/12345678-1234-1234-1234-1234567890ab'",
    ],
)
def test_hostile_user_ids_are_rejected_before_graph(app: RunningApp, graphsim: SimControl, path: str) -> None:
    """Path tricks, encoded slashes, long ids, control characters never reach Graph: our 400, or the host's
    own refusal (404 for a path that matches no route, 400/414 for a request line over the host's limit)."""
    response = app.get(path)
    assert response.status_code in {400, 404, 414}
    assert graphsim.count(USER_ROUTE) == 0
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "params",
    [
        {"top": "0"},
        {"top": "101"},
        {"top": "-1"},
        {"top": "1e2"},
        {"top": "\u00b2"},  # "²".isdigit() is True, int("²") raises
        {"top": "\uff11\uff10"},  # fullwidth "10"
        {"top": "9" * 400},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJ2IjoxLCJzIjotNSwidCI6MTAsImYiOlsiaWQiXX0"},  # forged: negative skip
        {"cursor": "eyJ2IjoxLCJzIjoxMCwidCI6MTAsImYiOlsiYm9keSJdfQ"},  # forged: field outside the allow-list
        {"cursor": "A" * 5000},
        {"fields": ",,,"},
    ],
)
def test_bad_page_parameters_are_400(app: RunningApp, graphsim: SimControl, params: dict[str, str]) -> None:
    """Out-of-range top, forged or oversized cursors and empty field lists are 400s with no Graph call."""
    user = _a_user(graphsim)
    response = app.get(f"/api/users/{user['id']}/messages", params=params)
    assert response.status_code == 400
    assert graphsim.count(MESSAGES_ROUTE) == 0
