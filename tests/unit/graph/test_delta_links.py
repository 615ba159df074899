"""Delta links are kept relative to the Graph base URL and only ever followed on the current one."""

from __future__ import annotations

import pytest

from shared.graph.delta import absolute_link, relative_link

BASE = "http://127.0.0.1:8080/v1.0"


@pytest.mark.parametrize(
    ("stored", "relative"),
    [
        ("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc", "users/delta?$deltatoken=abc"),
        ("https://graph.microsoft.us/v1.0/users/delta()?%24skiptoken=x%2By", "users/delta()?%24skiptoken=x%2By"),
        (
            "https://graph.microsoft.com/v1.0/users/u1/mailFolders/inbox/messages/delta?%24deltatoken=t",
            "users/u1/mailFolders/inbox/messages/delta?%24deltatoken=t",
        ),
        (
            "https://graph.microsoft.com/beta/users('u1')/mailFolders('AQMk%3D')/messages/delta?$deltatoken=t",
            "users('u1')/mailFolders('AQMk%3D')/messages/delta?$deltatoken=t",
        ),
        ("http://old-proxy.internal/graph/v1.0/users/delta?$deltatoken=abc", "users/delta?$deltatoken=abc"),
        ("users/delta?$deltatoken=abc", "users/delta?$deltatoken=abc"),
        ("//evil.example/v1.0/users/delta", "users/delta"),  # another host is never called, only rebased
    ],
)
def test_links_from_any_base_url_become_relative_and_land_on_the_current_base(stored: str, relative: str) -> None:
    """Absolute links (other clouds, other hosts, older rows) lose scheme, host and version root."""
    assert relative_link(stored, BASE) == relative
    assert absolute_link(stored, BASE) == f"{BASE}/{relative}"


def test_a_base_url_without_a_version_root_is_stripped_by_its_own_path() -> None:
    """A base URL with no /v1.0/ (a proxy) still yields relative links for its own absolute ones."""
    base = "http://127.0.0.1:8080/graph"
    assert relative_link(f"{base}/users/delta?$deltatoken=1", base) == "users/delta?$deltatoken=1"


@pytest.mark.parametrize(
    "stored",
    [
        "https://evil.example/v1.0/users/u1/messages?$skiptoken=a",  # not a delta path
        "https://evil.example/collect?users/delta",
        "https://graph.microsoft.com/v1.0/subscriptions",
        "https://evil.example/users/delta?$deltatoken=a",  # no version root: whose API is this?
        "users/../../admin/delta",
        "users/delta#x",
        "groups/delta?$deltatoken=a",
    ],
)
def test_links_that_are_not_graph_delta_links_are_refused(stored: str) -> None:
    """Only Graph delta paths are followed; anything else raises (catch-up then resyncs)."""
    with pytest.raises(ValueError, match="delta link"):
        relative_link(stored, BASE)
