"""``python -m shared.ops grant-graph-roles`` against the running Graph simulator: it assigns Graph's app
roles to the managed identity's service principal, changes nothing when run again, refuses a missing or
malformed identity with exit status 2, and converges after a failed assignment."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devtools.azurite import free_port
from devtools.graphsim.client import SimControl
from devtools.graphsim.service_principals import GRAPH_APP_ROLES, GRAPH_SP_ID, IDENTITY_APP_ID, IDENTITY_SP_ID
from shared.ops import run
from shared.wiring import registry
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer

pytestmark = pytest.mark.integration

ASSIGNMENTS = "GET /servicePrincipals/{id}/appRoleAssignments"
CREATE = "POST /servicePrincipals/{id}/appRoleAssignments"


@pytest.fixture(name="grant")
def _grant(graphsim: SimControl, graphsim_server: GraphSimServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    """Run the command in-process against the simulator; (exit status, JSON output, stderr)."""
    monkeypatch.setenv("GRAPH_STATIC_TOKEN", GRAPHSIM_TOKEN)

    async def grant(*argv: str) -> tuple[int, Any, str]:
        base = ["--settings", "/nonexistent/local.settings.json", "grant-graph-roles"]
        status = await run([*base, *argv, "--graph-url", graphsim_server.base_url], registry)
        captured = capsys.readouterr()
        return status, json.loads(captured.out), captured.err

    return grant


def assigned_roles(server: GraphSimServer) -> list[str]:
    """The Graph role values the seeded identity holds, read back through Graph's own route."""
    by_id = {role_id: value for value, role_id in GRAPH_APP_ROLES.items()}
    response = httpx.get(
        f"{server.base_url}/servicePrincipals/{IDENTITY_SP_ID}/appRoleAssignments",
        headers={"Authorization": f"Bearer {GRAPHSIM_TOKEN}"},
    )
    response.raise_for_status()
    items = response.json()["value"]
    assert all(item["resourceId"] == GRAPH_SP_ID and item["principalId"] == IDENTITY_SP_ID for item in items)
    return sorted(by_id[item["appRoleId"]] for item in items)


async def test_grants_the_default_roles_once(grant: Any, graphsim: SimControl, graphsim_server: GraphSimServer) -> None:
    """By client id: User.Read.All and Mail.Read are assigned; a second run assigns nothing and says so."""
    status, first, _ = await grant(IDENTITY_APP_ID)
    assert status == 0
    assert first["principal_id"] == IDENTITY_SP_ID
    assert (first["granted"], first["already_assigned"]) == (["User.Read.All", "Mail.Read"], [])
    assert assigned_roles(graphsim_server) == ["Mail.Read", "User.Read.All"]
    posts = graphsim.count(CREATE)
    status, second, _ = await grant(IDENTITY_APP_ID)
    assert status == 0
    assert (second["granted"], second["already_assigned"]) == ([], ["User.Read.All", "Mail.Read"])
    assert graphsim.count(CREATE) == posts == 2
    assert assigned_roles(graphsim_server) == ["Mail.Read", "User.Read.All"]


async def test_object_id_and_explicit_roles(grant: Any, graphsim_server: GraphSimServer) -> None:
    """By service principal object id, with --role: only the roles named (repeats folded) are assigned."""
    status, result, _ = await grant(IDENTITY_SP_ID, "--role", "Mail.ReadBasic.All", "--role", "Mail.ReadBasic.All")
    assert status == 0
    assert result["granted"] == ["Mail.ReadBasic.All"]
    assert assigned_roles(graphsim_server) == ["Mail.ReadBasic.All"]


async def test_missing_identity_is_refused(grant: Any, graphsim: SimControl) -> None:
    """An identity with no service principal: exit 2, a clear JSON error and stderr line, nothing assigned."""
    status, result, err = await grant("0b5e2d4c-0000-4000-8000-000000000000")
    assert status == 2
    assert result["error"]["code"] == "identity_not_found"
    assert "no service principal with client id or object id 0b5e2d4c" in result["error"]["message"]
    assert err.startswith("shared.ops: identity_not_found:")
    assert graphsim.count(CREATE) == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["x' or appId ne '"], "identity must be a client id or object id (a GUID)"),
        (["", "--role", "User.Read.All"], "identity must be"),
        ([IDENTITY_APP_ID + "0" * 5000], "identity must be"),
        ([IDENTITY_APP_ID, "--role", "User.Read.All') or ('"], "roles must be"),
        ([IDENTITY_APP_ID, "--role", "Directory.ReadWrite.Everything"], "not application permissions of Microsoft"),
    ],
)
async def test_hostile_or_unknown_input_is_refused(
    grant: Any, graphsim: SimControl, argv: list[str], expected: str
) -> None:
    """Malformed identities and role names never reach a $filter; unknown roles assign nothing."""
    status, result, _ = await grant(*argv)
    assert status == 2
    assert result["error"]["code"] == "grant_failed"
    assert expected in result["error"]["message"]
    assert len(result["error"]["message"]) < 400
    assert graphsim.count(CREATE) == 0


async def test_a_failed_assignment_converges_on_the_next_run(
    grant: Any, graphsim: SimControl, graphsim_server: GraphSimServer
) -> None:
    """Graph fails an assignment (503): exit 2 naming it, the roles already assigned stay; the rerun adds only
    what is missing."""
    fault = r"/servicePrincipals/[^/]+/appRoleAssignments"
    graphsim.add_fault(fault, 503, method="POST", count=1)
    status, result, _ = await grant(IDENTITY_APP_ID, "--role", "User.Read.All")
    assert status == 2
    assert "Graph answered 503 to POST" in result["error"]["message"]
    assert assigned_roles(graphsim_server) == []
    status, result, _ = await grant(IDENTITY_APP_ID, "--role", "User.Read.All")
    assert (status, result["granted"]) == (0, ["User.Read.All"])
    graphsim.add_fault(fault, 503, method="POST", count=1)
    status, result, _ = await grant(IDENTITY_APP_ID)  # User.Read.All held; the POST for Mail.Read fails
    assert status == 2
    assert assigned_roles(graphsim_server) == ["User.Read.All"]
    status, result, _ = await grant(IDENTITY_APP_ID)
    assert status == 0
    assert (result["granted"], result["already_assigned"]) == (["Mail.Read"], ["User.Read.All"])
    assert assigned_roles(graphsim_server) == ["Mail.Read", "User.Read.All"]


async def test_unreachable_graph_or_no_sign_in_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: exit 2 'Graph unreachable'. Real Graph without an Azure CLI sign-in (no `az` here):
    exit 2 telling the operator to sign in, before any request is sent."""
    monkeypatch.setenv("GRAPH_STATIC_TOKEN", GRAPHSIM_TOKEN)
    monkeypatch.setenv("PATH", "/nonexistent")  # no `az` to ask for a token
    base = ["--settings", "/nonexistent/local.settings.json", "grant-graph-roles", IDENTITY_APP_ID, "--graph-url"]
    for url, expected in [
        (f"http://127.0.0.1:{free_port()}/v1.0", "Graph unreachable: ConnectError"),
        ("https://graph.microsoft.com/v1.0", "sign in with `az login` as an admin"),
    ]:
        status = await run([*base, url], registry)
        result = json.loads(capsys.readouterr().out)
        assert status == 2
        assert expected in result["error"]["message"]
