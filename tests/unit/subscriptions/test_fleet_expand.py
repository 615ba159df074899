"""Expanding mailbox fleets into one desired entry per member: who is in, who wins a mailbox named twice,
and what an unreadable member list means."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import UnavailableError
from shared.subscriptions.desired import parse_desired
from shared.subscriptions.fleet import expand

A = "5d0d1e5e-1111-4a2b-9c3d-00000000000a"
U1, U2, U3, U9 = (f"0000000{n}-aaaa-4bbb-8ccc-dddddddddddd" for n in (1, 2, 3, 9))
B = "5d0d1e5e-1111-4a2b-9c3d-00000000000b"


class Directory:
    def __init__(self, groups: dict[str | None, list[dict[str, Any]]], failing: set[str | None] | None = None) -> None:
        self.groups = groups
        self.failing = failing or set()
        self.calls: list[tuple[str | None, bool]] = []

    async def list_fleet_users(self, group_id: str | None, *, transitive: bool = False) -> list[dict[str, Any]]:
        self.calls.append((group_id, transitive))
        if group_id in self.failing:
            raise UnavailableError("Graph is down")
        return self.groups[group_id]


async def test_members_become_entries_and_disabled_accounts_are_left_out() -> None:
    directory = Directory({A: [{"id": U1, "accountEnabled": True}, {"id": U2, "accountEnabled": False}, {"id": U3}]})
    expansion = await expand(parse_desired(f"mailboxes(group={A},transitive)/messages=created+data"), directory)
    assert [d.spec.resource for d in expansion.desired] == [f"users/{U1}/messages", f"users/{U3}/messages"]
    assert all(d.with_data and d.change_types == ("created",) for d in expansion.desired)
    assert expansion.members == {
        f"mailboxes(group={A},transitive)/messages": (f"users/{U1}/messages", f"users/{U3}/messages")
    }
    assert expansion.complete
    assert expansion.fleet_resources == {f"users/{U1}/messages", f"users/{U3}/messages"}
    assert directory.calls == [(A, True)]


async def test_a_fixed_entry_wins_over_a_fleet_and_an_earlier_fleet_over_a_later_one() -> None:
    directory = Directory({A: [{"id": U1.upper()}, {"id": U2}], B: [{"id": U2}, {"id": U3}]})
    desired = parse_desired(
        f"mailboxes(group={A})/messages=created; mailboxes(group={B})/messages=deleted; "
        f"users/{U1}/messages=updated; users=updated"
    )
    expansion = await expand(desired, directory)
    by_resource = {d.spec.resource: d.change_types for d in expansion.desired}
    assert by_resource == {
        "users": ("updated",),
        f"users/{U1}/messages": ("updated",),
        f"users/{U2}/messages": ("created",),
        f"users/{U3}/messages": ("deleted",),
    }
    assert expansion.fleet_resources == {f"users/{U2}/messages", f"users/{U3}/messages"}
    assert expansion.members[f"mailboxes(group={A})/messages"] == (f"users/{U1}/messages", f"users/{U2}/messages")


async def test_an_unreadable_fleet_makes_the_expansion_incomplete_but_keeps_the_others() -> None:
    directory = Directory({None: [{"id": U9}]}, failing={A})
    desired = parse_desired(f"mailboxes(group={A})/messages=created; mailboxes(tenant)/messages=created; users=updated")
    expansion = await expand(desired, directory)
    assert not expansion.complete
    assert [d.spec.resource for d in expansion.desired] == ["users", f"users/{U9}/messages"]
    assert directory.calls == [(A, False), (None, False)]


async def test_without_fleets_no_directory_is_needed() -> None:
    expansion = await expand(parse_desired("users=updated"), None)
    assert [d.spec.resource for d in expansion.desired] == ["users"]
    with pytest.raises(RuntimeError):
        await expand(parse_desired("mailboxes(tenant)/messages=created"), None)


async def test_member_ids_that_are_not_guids_are_skipped() -> None:
    """A hostile or broken Graph answer cannot put path or key characters into a subscription's resource."""
    odd = [{"id": "../../admin"}, {"id": "a/b?c#d"}, {"id": "x" * 5000}, {"id": U1}]
    expansion = await expand(parse_desired(f"mailboxes(group={A})/messages=created"), Directory({A: odd}))
    assert [d.spec.resource for d in expansion.desired] == [f"users/{U1}/messages"]
