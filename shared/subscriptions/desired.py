"""The desired subscriptions, read from one setting, and the resource shapes this app supports.

Format: entries separated by ``;``, each ``resource=changeType,changeType``; whitespace is ignored and an
empty value means "no subscriptions"::

    users=updated,deleted; users/adele@contoso.com/messages=created,updated,deleted+data@eventhub

Resources: ``users``, ``users/{id}``, ``users/{id}/messages``, ``users/{id}/mailFolders/{folder}/messages``
with ``{id}`` a user id or UPN and ``{folder}`` a folder id or well-known name (``inbox``). A mailbox fleet
names a set of mailboxes instead of one: ``mailboxes(group={group id})/messages`` (the group's direct
members; ``mailboxes(group={id},transitive)`` includes nested groups' members) or ``mailboxes(tenant)/messages``
(every user), optionally ``.../mailFolders/{folder}/messages``; disabled accounts are left out, and each member
gets its own subscription (docs/fleet.md). Change types:
``created``, ``updated``, ``deleted``. A trailing ``@eventhub`` makes Graph deliver that subscription's change and
lifecycle notifications to the configured event hub instead of the webhook (``@webhook``, the default, may
be written too; docs/eventhubs.md). ``+data`` after the change types of a messages resource asks Graph to
include the changed message, encrypted, in each notification (rich notifications, docs/rich-notifications.md;
needs ``RICH_NOTIFICATIONS``). Every problem is collected and reported in one ``ConfigurationError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from shared.errors import ConfigurationError

ResourceKind = Literal["users", "user", "messages", "folder_messages", "mailboxes"]
Delivery = Literal["webhook", "eventhub"]
DELIVERIES: tuple[Delivery, ...] = ("webhook", "eventhub")

CHANGE_TYPES = ("created", "updated", "deleted")
SUPPORTED = (
    "users, users/{id}, users/{id}[/mailFolders/{folder}]/messages, "
    "mailboxes(group={id}[,transitive]|tenant)[/mailFolders/{folder}]/messages"
)
USERS_MAX_LIFETIME = timedelta(minutes=41_760)  # Graph's maximum for users/groups
MESSAGES_MAX_LIFETIME = timedelta(minutes=10_080)  # Outlook messages without resource data
MESSAGES_WITH_DATA_MAX_LIFETIME = timedelta(minutes=1_440)  # Outlook messages with resource data
WITH_DATA = "+data"
MAX_ENTRIES = 200  # each one is a Graph subscription to keep alive; more is a mistake, not a plan
MAX_LENGTH = 32 * 1024
MAX_ERRORS = 10  # a hostile value must not produce a megabyte of error text

# An id segment: GUID, UPN or folder id (URL-safe base64); no '/', '?', '#', '(' or whitespace.
_ID = r"[A-Za-z0-9._@'+=\-]{1,256}"
_SHAPES: tuple[tuple[ResourceKind, re.Pattern[str]], ...] = (
    ("users", re.compile(r"users", re.I)),
    ("user", re.compile(rf"users/(?P<user>{_ID})", re.I)),
    ("messages", re.compile(rf"users/(?P<user>{_ID})/messages", re.I)),
    ("folder_messages", re.compile(rf"users/(?P<user>{_ID})/mailfolders/(?P<folder>{_ID})/messages", re.I)),
)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_FLEET = re.compile(
    rf"mailboxes\((?:(?P<tenant>tenant)|group=(?P<group>{_GUID})(?P<transitive>,transitive)?)\)"
    rf"(?:/mailfolders/(?P<folder>{_ID}))?/messages",
    re.I,
)


@dataclass(frozen=True)
class ResourceSpec:
    """A supported subscription resource; ``resource`` is its one canonical spelling (the comparison key)."""

    kind: ResourceKind
    user: str | None = None
    folder: str | None = None
    group: str | None = None  # mailboxes: the group whose members are the fleet (None: the whole tenant)
    transitive: bool = False  # mailboxes: members of nested groups too

    @property
    def resource(self) -> str:
        """The resource as sent to Graph: user ids/UPNs are case-insensitive, so lower-cased; folder ids are not.
        A fleet's is the name of its entry, never sent: its members' resources are."""
        if self.kind == "mailboxes":
            scope = (
                "tenant" if self.group is None else f"group={self.group}" + (",transitive" if self.transitive else "")
            )
            folder = f"/mailFolders/{self.folder}" if self.folder else ""
            return f"mailboxes({scope}){folder}/messages"
        if self.kind == "users":
            return "users"
        if self.kind == "user":
            return f"users/{self.user}"
        if self.kind == "messages":
            return f"users/{self.user}/messages"
        return f"users/{self.user}/mailFolders/{self.folder}/messages"

    @property
    def carries_messages(self) -> bool:
        return self.kind in ("messages", "folder_messages", "mailboxes")

    @property
    def is_fleet(self) -> bool:
        return self.kind == "mailboxes"

    def member(self, user_id: str) -> ResourceSpec:
        """A fleet member's own resource: its messages, or the fleet's folder of them."""
        return ResourceSpec("folder_messages" if self.folder else "messages", user_id.lower(), self.folder)

    def max_lifetime(self, with_data: bool = False) -> timedelta:
        """Graph's longest lifetime for this resource; shorter for messages with resource data."""
        if not self.carries_messages:
            return USERS_MAX_LIFETIME
        return MESSAGES_WITH_DATA_MAX_LIFETIME if with_data else MESSAGES_MAX_LIFETIME


@dataclass(frozen=True)
class DesiredSubscription:
    """One entry of the desired state."""

    spec: ResourceSpec
    change_types: tuple[str, ...]
    delivery: Delivery = "webhook"
    with_data: bool = False  # rich notifications: the changed message travels in the notification


def parse_resource(text: str) -> ResourceSpec:
    """A resource path in one of the supported shapes; ``ValueError`` (with the reason) otherwise."""
    path = text.strip().strip("/")
    for kind, pattern in _SHAPES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        groups = match.groupdict()
        user = groups.get("user")
        folder = groups.get("folder")
        return ResourceSpec(kind, user.lower() if user else None, folder)
    fleet = _FLEET.fullmatch(path)
    if fleet is not None:
        group = fleet["group"].lower() if fleet["group"] else None
        return ResourceSpec("mailboxes", folder=fleet["folder"], group=group, transitive=bool(fleet["transitive"]))
    raise ValueError(f"unsupported resource {_shown(text)}; expected one of {SUPPORTED}")


def parse_change_types(text: str) -> tuple[str, ...]:
    """``created,updated`` → ``("created", "updated")`` in a fixed order; ``ValueError`` otherwise."""
    names = [name.strip().lower() for name in text.split(",")]
    unknown = [name for name in names if name not in CHANGE_TYPES]
    if unknown:
        raise ValueError(
            f"unknown change types {', '.join(_shown(n) for n in unknown[:5])}; expected {', '.join(CHANGE_TYPES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"repeated change types in {_shown(text)}")
    return tuple(name for name in CHANGE_TYPES if name in names)


def parse_delivery(text: str) -> tuple[str, Delivery]:
    """``created,updated@eventhub`` → (``created,updated``, ``eventhub``); no ``@`` means the webhook."""
    change_types, at, target = text.partition("@")
    if not at:
        return change_types, "webhook"
    name = target.strip().lower()
    for delivery in DELIVERIES:
        if name == delivery:
            return change_types, delivery
    raise ValueError(f"unknown delivery {_shown(target)}; expected {' or '.join('@' + d for d in DELIVERIES)}")


def parse_with_data(text: str, spec: ResourceSpec) -> tuple[str, bool]:
    """``created,updated+data`` → (``created,updated``, True); only messages resources carry data."""
    change_types, plus, option = text.partition("+")
    if not plus:
        return change_types, False
    if "+" + option.strip().lower() != WITH_DATA:
        raise ValueError(f"unknown option {_shown('+' + option)}; expected {WITH_DATA}")
    if not spec.carries_messages:
        raise ValueError(f"{WITH_DATA} is supported for messages resources only, not {spec.resource!r}")
    return change_types, True


def parse_desired(value: str | None, setting: str = "GRAPH_SUBSCRIPTIONS") -> tuple[DesiredSubscription, ...]:
    """Parse the setting; one ``ConfigurationError`` names every bad entry (by position) and why."""
    text = (value or "").strip()
    if len(text) > MAX_LENGTH:
        raise ConfigurationError(f"{setting}: at most {MAX_LENGTH} characters, got {len(text)}")
    entries = [entry.strip() for entry in text.split(";")]
    entries = [entry for entry in entries if entry]
    if len(entries) > MAX_ENTRIES:
        raise ConfigurationError(f"{setting}: at most {MAX_ENTRIES} subscriptions, got {len(entries)}")
    problems: list[str] = []
    desired: dict[str, DesiredSubscription] = {}
    for position, entry in enumerate(entries, start=1):
        resource, sep, change_types = entry.rpartition("=")  # folder ids may contain "="
        try:
            if not sep:
                raise ValueError(f"{_shown(entry)} is not 'resource=changeType,...'")
            spec = parse_resource(resource)
            if spec.resource in desired:
                raise ValueError(f"resource {spec.resource!r} is listed twice")
            change_types, delivery = parse_delivery(change_types)
            change_types, with_data = parse_with_data(change_types, spec)
            desired[spec.resource] = DesiredSubscription(spec, parse_change_types(change_types), delivery, with_data)
        except ValueError as error:
            problems.append(f"entry {position}: {error}")
    if problems:
        if len(problems) > MAX_ERRORS:
            problems = [*problems[:MAX_ERRORS], f"... and {len(problems) - MAX_ERRORS} more"]
        header = f"Invalid {setting} (format 'resource=created,updated[+data][@eventhub]; ...'):"
        raise ConfigurationError(header + "\n  " + "\n  ".join(problems))
    return tuple(desired.values())


def _shown(text: str) -> str:
    """A bounded quote of user input for error messages."""
    return repr(text[:80] + ("..." if len(text) > 80 else ""))
