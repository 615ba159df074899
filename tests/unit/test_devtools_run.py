"""The run command's decisions: which webhook URL the app announces, where Graph is, how often Azurite restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.graphsim.seed import APPLICATION_ID
from devtools.run import (
    SAMPLE_GRAPH_URL,
    RestartBudget,
    choose_storage,
    external_graph_url,
    simulator_rich_settings,
    webhook_base_url,
)
from shared.richdata.keyring import load_key


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (None, "http://127.0.0.1:7391/api"),
        ("", "http://127.0.0.1:7391/api"),
        ("http://127.0.0.1:7071/api", "http://127.0.0.1:7391/api"),  # the sample's value follows --port
        ("http://localhost:7071/api", "http://localhost:7391/api"),
        ("http://[::1]:7071/api", "http://[::1]:7391/api"),
        ("http://127.0.0.1:7072/api", "http://127.0.0.1:7072/api"),  # a loopback port chosen on purpose
        ("https://tunnel.example.net/api", "https://tunnel.example.net/api"),  # a public URL is kept
    ],
)
def test_webhook_base_url_follows_the_port_only_for_the_loopback_default(configured: str | None, expected: str) -> None:
    assert webhook_base_url(configured, 7391) == expected


@pytest.mark.parametrize(
    ("env", "option", "expected"),
    [
        ({}, None, None),
        ({"GRAPH_BASE_URL": SAMPLE_GRAPH_URL}, None, None),
        ({"GRAPH_BASE_URL": SAMPLE_GRAPH_URL + "/"}, None, None),
        ({"GRAPH_BASE_URL": SAMPLE_GRAPH_URL}, "http://127.0.0.1:9999/v1.0", "http://127.0.0.1:9999/v1.0"),
        ({"GRAPH_BASE_URL": "http://127.0.0.1:9999/v1.0"}, None, "http://127.0.0.1:9999/v1.0"),
        ({"GRAPH_AUTH_MODE": "client_secret"}, None, "https://graph.microsoft.com/v1.0"),
    ],
)
def test_external_graph_url_decides_whether_the_simulator_starts(
    env: dict[str, str], option: str | None, expected: str | None
) -> None:
    assert external_graph_url(env, option) == expected


def test_restart_budget_allows_a_few_restarts_per_window() -> None:
    """A crash loop is cut off after ``limit`` restarts; restarts older than the window no longer count."""
    now = [0.0]
    budget = RestartBudget(limit=2, window_s=10.0, clock=lambda: now[0])
    assert [budget.take(), budget.take(), budget.take()] == [1, 2, None]
    now[0] = 10.5
    assert budget.take() == 1


def test_identity_storage_settings_win_over_the_connection_string() -> None:
    """Identity-based settings with a value: the connection string (the app refuses both) is dropped and no
    Azurite is started; the samples' empty identity settings leave the Azurite path as it was."""
    started: list[str] = []

    def azurite() -> str:
        started.append("azurite")
        return "UseDevelopmentStorage=true"

    env = {"AzureWebJobsStorage": "from-the-file", "AzureWebJobsStorage__accountName": "prodstore"}
    note = choose_storage(env, azurite)
    assert "AzureWebJobsStorage" not in env
    assert env["AzureWebJobsStorage__accountName"] == "prodstore"
    assert started == []
    assert "identity-based (AzureWebJobsStorage__accountName)" in note
    assert "connection string is ignored" in note

    sample = {"AzureWebJobsStorage": "from-the-file", "AzureWebJobsStorage__accountName": " "}
    assert choose_storage(sample, azurite) == "Azurite"
    assert sample["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert started == ["azurite"]


def test_rich_notifications_get_a_local_certificate_kept_across_runs(tmp_path: Path) -> None:
    """With the simulator as Graph: a certificate generated once (private file), the simulator as token service.
    The setting reads as the app reads it ("on" included)."""
    first = {"RICH_NOTIFICATIONS": "on"}
    note = simulator_rich_settings(first, "http://127.0.0.1:8070", tmp_path)

    assert note is not None
    assert "local certificate" in note
    key = load_key(first["RICH_NOTIFICATIONS_CERTIFICATE_ID"], first["RICH_NOTIFICATIONS_CERTIFICATE"].encode())
    assert key.certificate_id.startswith("local-")
    assert first["RICH_NOTIFICATIONS_AUDIENCE"] == APPLICATION_ID
    assert first["RICH_NOTIFICATIONS_OPENID_CONFIGURATION"] == (
        "http://127.0.0.1:8070/common/.well-known/openid-configuration"
    )
    assert (tmp_path / "rich-notifications.pem").stat().st_mode & 0o077 == 0
    second = {"RICH_NOTIFICATIONS": "on"}
    simulator_rich_settings(second, "http://127.0.0.1:8070", tmp_path)
    assert second == first  # the next run reuses it: subscriptions made earlier still decrypt


def test_rich_settings_given_are_kept_and_off_means_untouched(tmp_path: Path) -> None:
    given = {"RICH_NOTIFICATIONS": "true", "RICH_NOTIFICATIONS_CERTIFICATE": "pem", "RICH_NOTIFICATIONS_AUDIENCE": "a"}
    simulator_rich_settings(given, "http://127.0.0.1:8070", tmp_path)
    assert (given["RICH_NOTIFICATIONS_CERTIFICATE"], given["RICH_NOTIFICATIONS_AUDIENCE"]) == ("pem", "a")
    for value in ("false", "", "maybe"):  # off, unset, or a bad value the app itself will report
        off = {"RICH_NOTIFICATIONS": value}
        assert simulator_rich_settings(off, "http://127.0.0.1:8070", tmp_path) is None
        assert off == {"RICH_NOTIFICATIONS": value}
    assert not (tmp_path / "rich-notifications.pem").exists()
