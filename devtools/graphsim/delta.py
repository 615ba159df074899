"""Change tracking for delta queries: an ordered change log per scope and opaque tokens.

A token records a position in a scope's log (plus the paging state of a round), so the
next round returns only what changed after it. Invalidating bumps a generation number,
which makes every older token answer 410 Gone, as Graph does when a sync state is lost.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devtools.graphsim.wire import GraphError, link

USERS_SCOPE = "users"


def members_scope(group_id: str) -> str:
    """The change-log scope of one group's direct members (directory kind: a lost state is 410 resync)."""
    return f"members:{group_id}"


def mail_scope(user_id: str, folder_id: str) -> str:
    """The change-log scope of one mail folder."""
    return f"mail:{user_id}:{folder_id}"


@dataclass(frozen=True)
class Change:
    """One id's latest change within a round: upserted or removed. ``fields`` names the properties an
    update changed (a delta round then returns only those plus ``id``, as Graph does for directory
    objects); None means the whole object (created, or not known)."""

    item_id: str
    removed: bool
    fields: frozenset[str] | None = None


@dataclass(frozen=True)
class DeltaState:
    """What a delta token or skip token carries."""

    scope: str
    since: int | None  # None: initial round (everything); else changes after this position
    upto: int  # log position the round ends at (becomes the next deltaLink's position)
    offset: int  # items already returned in this round
    select: list[str] | None
    generation: int


class ChangeLog:
    """Per-scope ordered log of item changes, the source of every delta round."""

    def __init__(self) -> None:
        self._position = 0
        self._log: dict[str, list[tuple[int, Change]]] = defaultdict(list)
        self._generation: dict[str, int] = defaultdict(int)  # keyed by "users" / "mail"

    def record(self, scope: str, item_id: str, *, removed: bool = False, fields: frozenset[str] | None = None) -> None:
        """Note that ``item_id`` changed (or went away) in ``scope``; ``fields``: the properties changed."""
        self._position += 1
        self._log[scope].append((self._position, Change(item_id, removed, fields)))

    @property
    def position(self) -> int:
        """The latest position: a round started now ends here."""
        return self._position

    def changes(self, scope: str, since: int, upto: int) -> list[Change]:
        """The latest change per id in (since, upto], ordered by when it last changed."""
        latest: dict[str, tuple[int, Change]] = {}
        for pos, change in self._log.get(scope, ()):
            if since < pos <= upto:
                earlier = latest.pop(change.item_id, None)
                if earlier is not None and not change.removed and not earlier[1].removed:
                    change = Change(change.item_id, False, _union(earlier[1].fields, change.fields))
                latest[change.item_id] = (pos, change)
        return [change for _, change in latest.values()]

    def invalidate(self, kind: str | None = None) -> None:
        """Make every existing token of ``kind`` ("users", "mail" or all) answer 410."""
        for name in (kind,) if kind else ("users", "mail"):
            self._generation[name] += 1

    def generation(self, scope: str) -> int:
        """The current generation of a scope's kind."""
        return self._generation[_kind(scope)]

    # Tokens -------------------------------------------------------------------------
    def encode(self, state: DeltaState) -> str:
        """An opaque, URL-safe token for ``state``."""
        payload: dict[str, Any] = {
            "s": state.scope,
            "f": state.since,
            "u": state.upto,
            "o": state.offset,
            "p": state.select,
            "g": state.generation,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def scope_of(self, token: str) -> str:
        """The scope a token was issued for (a groups deltaLink names no group; its token does)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return str(json.loads(raw)["s"])
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "BadRequest", "The delta or skip token is malformed.") from None

    def decode(self, token: str, scope: str) -> DeltaState:
        """Read a token issued for ``scope``; a stale generation is Graph's 410."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            state = DeltaState(
                scope=str(data["s"]),
                since=None if data["f"] is None else int(data["f"]),
                upto=int(data["u"]),
                offset=int(data["o"]),
                select=data["p"],
                generation=int(data["g"]),
            )
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "BadRequest", "The delta or skip token is malformed.") from None
        if state.scope != scope:
            raise GraphError(400, "BadRequest", "The token does not belong to this resource.")
        if state.generation != self.generation(scope):
            raise gone(scope)
        return state


def gone(scope: str) -> GraphError:
    """The 410 Graph sends for a sync state it no longer has.

    Directory resources answer ``resyncRequired`` and Outlook answers
    ``SyncStateNotFound`` (see docs/graph-simulator.md for the sources).
    """
    if _kind(scope) == "mail":
        return GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
    return GraphError(
        410,
        "resyncRequired",
        "Resync required. Replace any local cached copies of the directory objects with a full resync.",
    )


def _union(first: frozenset[str] | None, second: frozenset[str] | None) -> frozenset[str] | None:
    """The properties two updates changed together (None, the whole object, wins)."""
    return None if first is None or second is None else first | second


def _kind(scope: str) -> str:
    return "mail" if scope.startswith("mail:") else "users"


@dataclass(frozen=True)
class DeltaPage:
    """One page of a delta round: items, then either a skip token or a delta token."""

    value: list[dict[str, Any]]
    skip_token: str | None
    delta_token: str | None

    def links(self, base_url: str, path: str) -> dict[str, str]:
        """The page's ``@odata.nextLink`` (more of this round) or ``@odata.deltaLink`` (the round is over)."""
        if self.skip_token:
            return {"@odata.nextLink": link(base_url, path, {"$skiptoken": self.skip_token})}
        assert self.delta_token is not None
        return {"@odata.deltaLink": link(base_url, path, {"$deltatoken": self.delta_token})}


def run_round(
    log: ChangeLog,
    scope: str,
    *,
    skip_token: str | None,
    delta_token: str | None,
    select: list[str] | None,
    page_size: int,
    current_ids: Callable[[], list[str]],
    render: Callable[[str, list[str] | None], dict[str, Any] | None],
    removed: Callable[[str], dict[str, Any]],
    partial: Callable[[str, list[str] | None, frozenset[str]], dict[str, Any] | None] | None = None,
) -> DeltaPage:
    """Serve one delta request for ``scope``.

    Without a token it starts an initial round (every current item); a delta token starts
    a round of the changes since that token; a skip token continues a round. ``render``
    returns None for an item that no longer exists, which is then reported as removed. ``partial``
    (users) renders an update that names its changed properties: ``id`` plus only those.
    """
    if skip_token:
        state = log.decode(skip_token, scope)
    elif delta_token == "latest":  # noqa: S105 - Graph's documented keyword, not a secret
        # Graph's shortcut: no items, just a deltaLink from now on.
        now = log.position
        state = DeltaState(scope, now, now, 0, select, log.generation(scope))
        return DeltaPage([], None, log.encode(state))
    elif delta_token:
        previous = log.decode(delta_token, scope)
        state = DeltaState(scope, previous.upto, log.position, 0, previous.select, previous.generation)
    else:
        state = DeltaState(scope, None, log.position, 0, select, log.generation(scope))

    if state.since is None:
        entries = [Change(item_id, False) for item_id in current_ids()]
    else:
        entries = log.changes(scope, state.since, state.upto)
    page = entries[state.offset : state.offset + page_size]
    value = []
    for change in page:
        if change.removed:
            item = None
        elif partial is not None and change.fields is not None and state.since is not None:
            item = partial(change.item_id, state.select, change.fields)
        else:
            item = render(change.item_id, state.select)
        value.append(item if item is not None else removed(change.item_id))
    if state.offset + page_size < len(entries):
        following = DeltaState(scope, state.since, state.upto, state.offset + page_size, state.select, state.generation)
        return DeltaPage(value, log.encode(following), None)
    final = DeltaState(scope, state.upto, state.upto, 0, state.select, state.generation)
    return DeltaPage(value, None, log.encode(final))
