"""The simulator's pure building blocks: delta log and tokens, fault rules, ids, config."""

from __future__ import annotations

import re

import pytest

from devtools.graphsim.config import RUNTIME_KEYS, ConfigError, SimConfig
from devtools.graphsim.delta import ChangeLog, run_round
from devtools.graphsim.faults import FaultRegistry, FaultRuleError
from devtools.graphsim.seed import outlook_id
from devtools.graphsim.subscriptions import Target, parse_resource
from devtools.graphsim.tenant import Tenant
from devtools.graphsim.wire import GraphError


def _round(log: ChangeLog, ids: list[str], token: str | None = None) -> tuple[list[str], str]:
    page = run_round(
        log,
        "users",
        skip_token=None,
        delta_token=token,
        select=None,
        page_size=100,
        current_ids=lambda: ids,
        render=lambda item_id, _: {"id": item_id},
        removed=lambda item_id: {"id": item_id, "@removed": {}},
    )
    assert page.delta_token is not None
    return [("-" if "@removed" in v else "") + v["id"] for v in page.value], page.delta_token


def test_delta_round_reports_latest_change_per_id_once() -> None:
    """Several changes to one id collapse into its latest state; later rounds see only newer changes."""
    log = ChangeLog()
    items, token = _round(log, ["a", "b"])
    assert items == ["a", "b"]
    log.record("users", "a")
    log.record("users", "b", removed=True)
    log.record("users", "a")
    items, token = _round(log, ["a"], token)
    assert items == ["-b", "a"]
    assert _round(log, ["a"], token)[0] == []


def test_invalidated_token_is_410() -> None:
    """Bumping the generation turns older tokens into 410 Gone."""
    log = ChangeLog()
    _, token = _round(log, [])
    log.invalidate("users")
    with pytest.raises(GraphError) as caught:
        _round(log, [], token)
    assert (caught.value.status, caught.value.code) == (410, "resyncRequired")


def test_fault_rule_with_count_wears_out() -> None:
    """A count-limited rule fires for the next N matches only and then disappears."""
    faults = FaultRegistry()
    faults.add({"path": "^/users$", "status": 429, "count": 2, "method": "get"})
    assert faults.match("POST", "/users") is None
    assert [faults.match("GET", "/users") is not None for _ in range(3)] == [True, True, False]
    assert faults.rules == []


def test_fault_rule_after_lets_the_first_matches_through() -> None:
    """``after`` fails a paged read in its middle: the first M matches pass, then the rule fires."""
    faults = FaultRegistry()
    faults.add({"path": "^/users/delta$", "status": 503, "count": 2, "after": 1})
    assert [faults.match("GET", "/users/delta") is not None for _ in range(4)] == [False, True, True, False]


def test_fault_rule_with_query_param_fails_only_the_later_pages() -> None:
    """``query_param`` fails every page of a paged read but its first, whoever reads."""
    faults = FaultRegistry()
    faults.add({"path": "^/users/delta$", "status": 503, "query_param": "$skiptoken"})
    assert faults.match("GET", "/users/delta", {"$deltatoken": "a"}) is None
    assert faults.match("GET", "/users/delta") is None
    assert faults.match("GET", "/users/delta", {"$skiptoken": "b"}) is not None


def test_fault_rule_validation() -> None:
    """Nonsense rules are refused with a reason."""
    faults = FaultRegistry()
    for spec in (
        {"path": "["},
        {"status": 42},
        {"action": "explode", "status": 500},
        {"path": "x"},
        {"status": 503, "after": -1},
    ):
        with pytest.raises(FaultRuleError):
            faults.add(spec)


def test_outlook_ids_are_deterministic_and_graph_like() -> None:
    """Same inputs, same id; ids are URL-safe base64 with '-', '_' and a trailing '='."""
    first = outlook_id(b"\x46", 42, "user", 1)
    assert first == outlook_id(b"\x46", 42, "user", 1)
    assert first != outlook_id(b"\x46", 42, "user", 2)
    assert re.fullmatch(r"[A-Za-z0-9_-]+=", first)
    assert "-" in first
    assert "_" in first


def test_subscription_resources_resolve_case_insensitively() -> None:
    """Resources are matched with or without a leading slash and in any case; folders by name or id."""
    tenant = Tenant(1, 2, 1)
    user = next(iter(tenant.users.values()))
    inbox = tenant.folders[user["id"]]["inbox"]
    assert parse_resource("/USERS", tenant) == Target("users")
    assert parse_resource(f"Users/{user['userPrincipalName']}", tenant) == Target("user", user["id"])
    assert parse_resource(f"users/{user['id']}/mailFolders('Inbox')/messages", tenant) == Target(
        "messages", user["id"], inbox
    )
    assert parse_resource(f"users/{user['id']}/mailfolders/{inbox}/messages", tenant).folder_id == inbox


def test_config_updates_are_validated() -> None:
    """Unknown keys, wrong types and out-of-range values are refused."""
    config = SimConfig()
    assert config.updated({"delivery_max_attempts": 2}, RUNTIME_KEYS).delivery_max_attempts == 2
    for change in ({"seed": 1}, {"latency_ms": "slow"}, {"max_items_per_post": 0}, {"delivery_max_attempts": 1.5}):
        with pytest.raises(ConfigError):
            config.updated(change, RUNTIME_KEYS)
