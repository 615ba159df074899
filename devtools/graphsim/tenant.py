"""The tenant's data: users, their folders and messages, and the mutations the control
API performs on them. Pure state; publishing changes is the simulator's job."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from devtools.graphsim import seed as gen
from devtools.graphsim.clock import graph_time
from devtools.graphsim.wire import GraphError, JsonObj

DEFAULT_USER_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_PROPERTIES = {
    name.lower(): name
    for name in (
        *DEFAULT_USER_PROPERTIES,
        "accountEnabled",
        "department",
        "companyName",
        "city",
        "country",
        "usageLocation",
        "mailNickname",
        "employeeId",
        "createdDateTime",
    )
}
MESSAGE_PROPERTIES = {
    name.lower(): name
    for name in (
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "categories",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
        "internetMessageId",
        "subject",
        "bodyPreview",
        "importance",
        "parentFolderId",
        "conversationId",
        "conversationIndex",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "isRead",
        "isDraft",
        "webLink",
        "inferenceClassification",
        "body",
        "sender",
        "from",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "flag",
    )
}
# Fields the control API may set on a message (the rest are derived).
WRITABLE_MESSAGE_FIELDS = frozenset(
    {"subject", "isRead", "importance", "categories", "flag", "body", "bodyPreview", "hasAttachments"}
)
WRITABLE_USER_FIELDS = frozenset(set(USER_PROPERTIES.values()) - {"id", "createdDateTime"})


def user_not_found(key: str) -> GraphError:
    """Graph's 404 for a user id or UPN that does not exist."""
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def mailbox_not_enabled() -> GraphError:
    """Outlook's answer for a user without an Exchange Online mailbox (no licence, or hosted elsewhere)."""
    return GraphError(
        404,
        "MailboxNotEnabledForRESTAPI",
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    )


def group_not_found(key: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist.")


def message_not_found() -> GraphError:
    """Outlook's 404 for a message id that does not exist in the mailbox."""
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


class Tenant:
    """Users and mailboxes, generated from a seed and then mutated by the control API."""

    def __init__(self, seed: int, users: int, messages_per_user: int) -> None:
        self.seed = seed
        self.users: dict[str, JsonObj] = {}
        self._by_upn: dict[str, str] = {}
        self.folders: dict[str, dict[str, str]] = {}  # user id -> well-known name -> folder id
        self.messages: dict[str, dict[str, JsonObj]] = {}  # user id -> message id -> message
        self.without_mailbox: set[str] = set()  # user ids Outlook answers MailboxNotEnabledForRESTAPI for
        self.groups: dict[str, JsonObj] = {}
        self.members: dict[str, dict[str, str]] = {}  # group id -> member id -> "user" | "group"
        self._serial = 0
        self._rng = random.Random(seed)
        taken: set[str] = set()
        for index in range(users):
            self._add_user(gen.make_user(self._rng, index, taken))
        user_list = list(self.users.values())
        for user in user_list:
            for n in range(messages_per_user):
                folder = "sentitems" if self._rng.random() < 0.15 else "inbox"
                received = gen.SEED_EPOCH - timedelta(minutes=37 * (n + 1) + self._rng.randint(0, 30))
                self._store_message(user, folder, received, self._rng.choice(user_list), None)

    # Users -------------------------------------------------------------------------
    def _add_user(self, user: JsonObj) -> None:
        self.users[user["id"]] = user
        self._by_upn[user["userPrincipalName"].lower()] = user["id"]
        self.folders[user["id"]] = {name: gen.folder_id(user["id"], name) for name in gen.WELL_KNOWN_FOLDERS}
        self.messages[user["id"]] = {}

    def find_user(self, key: str) -> JsonObj:
        """A user by id or (case-insensitive) userPrincipalName, else Graph's 404."""
        user = self.users.get(key) or self.users.get(self._by_upn.get(key.lower(), ""))
        if user is None:
            user = self.users.get(key.lower())
        if user is None:
            raise user_not_found(key)
        return user

    def create_user(self, fields: JsonObj, now: datetime) -> JsonObj:
        """Add a user; missing names are generated, ``id`` may be given for determinism."""
        _check_fields(fields, WRITABLE_USER_FIELDS | {"id"}, "user")
        user = gen.make_user(self._rng, len(self.users), set(self._by_upn))
        user["id"] = str(fields.get("id") or uuid.UUID(int=self._rng.getrandbits(128), version=4))
        user["createdDateTime"] = graph_time(now)
        user.update({k: v for k, v in fields.items() if k != "id"})
        if "userPrincipalName" in fields and "mail" not in fields:
            user["mail"] = fields["userPrincipalName"]
        if user["id"] in self.users or user["userPrincipalName"].lower() in self._by_upn:
            raise GraphError(400, "Request_BadRequest", "Another object with the same value already exists.")
        self._add_user(user)
        return user

    def update_user(self, key: str, fields: JsonObj) -> JsonObj:
        """Merge ``fields`` into a user."""
        _check_fields(fields, WRITABLE_USER_FIELDS, "user")
        user = self.find_user(key)
        if "userPrincipalName" in fields:
            self._by_upn.pop(user["userPrincipalName"].lower(), None)
            self._by_upn[str(fields["userPrincipalName"]).lower()] = user["id"]
        user.update(fields)
        return user

    def delete_user(self, key: str) -> tuple[JsonObj, list[JsonObj]]:
        """Remove a user and their mailbox (and memberships); returns the user and their messages."""
        user = self.find_user(key)
        del self.users[user["id"]]
        self.without_mailbox.discard(user["id"])
        for members in self.members.values():
            members.pop(user["id"], None)
        self._by_upn.pop(user["userPrincipalName"].lower(), None)
        self.folders.pop(user["id"], None)
        return user, list(self.messages.pop(user["id"], {}).values())

    def mailbox_of(self, key: str) -> JsonObj:
        """A user whose mailbox Outlook serves, else the user's 404 or ``MailboxNotEnabledForRESTAPI``."""
        user = self.find_user(key)
        if user["id"] in self.without_mailbox:
            raise mailbox_not_enabled()
        return user

    def set_mailbox(self, key: str, enabled: bool) -> JsonObj:
        """Give a user a mailbox (a licence) or take it away; their messages stay for when it returns."""
        user = self.find_user(key)
        if enabled:
            self.without_mailbox.discard(user["id"])
        else:
            self.without_mailbox.add(user["id"])
        return user

    # Groups ----------------------------------------------------------------------------
    def find_group(self, key: str) -> JsonObj:
        group = self.groups.get(key.lower())
        if group is None:
            raise group_not_found(key)
        return group

    def create_group(self, fields: JsonObj, now: datetime) -> JsonObj:
        """A security group; ``id`` may be given for determinism, ``members`` (user or group ids) added."""
        _check_fields(fields, {"id", "displayName", "members"}, "group")
        group_id = str(fields.get("id") or uuid.UUID(int=self._rng.getrandbits(128), version=4)).lower()
        if group_id in self.groups:
            raise GraphError(400, "Request_BadRequest", "Another object with the same value already exists.")
        name = str(fields.get("displayName") or f"Group {len(self.groups) + 1}")
        self.groups[group_id] = {
            "id": group_id,
            "displayName": name,
            "mailNickname": name.lower().replace(" ", "-")[:64],
            "securityEnabled": True,
            "mailEnabled": False,
            "groupTypes": [],
            "createdDateTime": graph_time(now),
        }
        self.members[group_id] = {}
        for member in fields.get("members") or []:
            self.add_member(group_id, str(member))
        return self.groups[group_id]

    def add_member(self, group_key: str, member_key: str) -> str:
        """Add a user or a group; the member's id. Adding one twice is Graph's 400."""
        group = self.find_group(group_key)
        if member_key.lower() in self.groups:
            member_id, kind = member_key.lower(), "group"
        else:
            member_id, kind = self.find_user(member_key)["id"], "user"
        if member_id in self.members[group["id"]] or member_id == group["id"]:
            raise GraphError(400, "Request_BadRequest", "One or more added object references already exist.")
        self.members[group["id"]][member_id] = kind
        return member_id

    def remove_member(self, group_key: str, member_id: str) -> None:
        group = self.find_group(group_key)
        if self.members[group["id"]].pop(member_id.lower(), None) is None:
            raise group_not_found(member_id)

    def transitive_user_ids(self, group_id: str) -> list[str]:
        """Users of a group and of the groups nested in it (each once, nesting cycles tolerated)."""
        seen_groups, users, pending = {group_id}, dict[str, None](), [group_id]
        while pending:
            for member_id, kind in self.members.get(pending.pop(), {}).items():
                if kind == "user":
                    users.setdefault(member_id, None)
                elif member_id not in seen_groups:
                    seen_groups.add(member_id)
                    pending.append(member_id)
        return list(users)

    # Folders and messages ------------------------------------------------------------
    def folder(self, user_id: str, name_or_id: str) -> tuple[str, str]:
        """(well-known name, folder id) for a folder given by well-known name or id."""
        folders = self.folders[user_id]
        name = name_or_id.lower()
        if name in folders:
            return name, folders[name]
        for well_known, fid in folders.items():
            if fid == name_or_id:
                return well_known, fid
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def folder_name(self, user_id: str, folder_id: str) -> str:
        """The well-known name of a folder id (folders are never renamed here)."""
        return self.folder(user_id, folder_id)[0]

    def user_messages(self, user_id: str, folder_id: str | None = None) -> list[JsonObj]:
        """A mailbox's messages (optionally of one folder), in storage order."""
        items = self.messages[user_id].values()
        return [m for m in items if folder_id is None or m["parentFolderId"] == folder_id]

    def find_message(self, user_id: str, message_id: str) -> JsonObj:
        """A message of a mailbox, else Outlook's 404."""
        message = self.messages[user_id].get(message_id)
        if message is None:
            raise message_not_found()
        return message

    def _store_message(
        self,
        user: JsonObj,
        folder: str,
        received: datetime,
        sender: JsonObj,
        overrides: JsonObj | None,
    ) -> JsonObj:
        self._serial += 1
        message = gen.make_message(
            self._rng,
            seed=self.seed,
            user=user,
            sender=sender,
            serial=self._serial,
            folder=folder,
            parent_folder_id=self.folders[user["id"]][folder],
            received=received,
            overrides=overrides,
        )
        self.messages[user["id"]][message["id"]] = message
        return message

    def create_messages(self, user_key: str, fields: JsonObj, count: int, now: datetime) -> list[JsonObj]:
        """Deliver ``count`` new messages to a folder (inbox by default), received ``now``."""
        _check_fields(fields, WRITABLE_MESSAGE_FIELDS | {"folder", "from"}, "message")
        user = self.find_user(user_key)
        name, _ = self.folder(user["id"], str(fields.get("folder", "inbox")))
        overrides = {k: v for k, v in fields.items() if k in WRITABLE_MESSAGE_FIELDS}
        sender = self._sender(fields.get("from")) or self._rng.choice(list(self.users.values()))
        created = []
        for n in range(count):
            # Each new message is one millisecond "later" so receivedDateTime order is stable.
            message = self._store_message(user, name, now + timedelta(milliseconds=n), sender, overrides)
            message["lastModifiedDateTime"] = message["receivedDateTime"]  # new now, so an update is later
            created.append(message)
        return created

    def update_message(self, user_key: str, message_id: str, fields: JsonObj, now: datetime) -> JsonObj:
        """Change a message; a new ``folder`` moves it (its id stays, as with Graph's move)."""
        _check_fields(fields, WRITABLE_MESSAGE_FIELDS | {"folder"}, "message")
        user = self.find_user(user_key)
        message = self.find_message(user["id"], message_id)
        if "folder" in fields:
            message["parentFolderId"] = self.folder(user["id"], str(fields["folder"]))[1]
        message.update({k: v for k, v in fields.items() if k in WRITABLE_MESSAGE_FIELDS})
        message["lastModifiedDateTime"] = graph_time(now)
        bump = base64.urlsafe_b64encode(gen.digest("ck", message_id, now.timestamp(), size=15)).decode()
        message["changeKey"] = "CQAAABYAAAA" + bump
        return message

    def delete_message(self, user_key: str, message_id: str) -> tuple[JsonObj, JsonObj]:
        """Remove a message; returns (user, message)."""
        user = self.find_user(user_key)
        message = self.find_message(user["id"], message_id)
        del self.messages[user["id"]][message_id]
        return user, message

    def _sender(self, spec: Any) -> JsonObj | None:
        if spec is None:
            return None
        if isinstance(spec, str):
            return self.find_user(spec)
        if isinstance(spec, dict) and "address" in spec:
            return {"displayName": spec.get("name", spec["address"]), "mail": spec["address"]}
        raise GraphError(400, "BadRequest", "'from' must be a user id/UPN or {name, address}")


def _check_fields(fields: JsonObj, allowed: frozenset[str] | set[str], kind: str) -> None:
    unknown = set(fields) - set(allowed) - {"count"}
    if unknown:
        raise GraphError(400, "BadRequest", f"unsupported {kind} field(s): {', '.join(sorted(unknown))}")


def etag(message: JsonObj) -> str:
    """The weak ETag Outlook derives from a message's changeKey."""
    return f'W/"{message["changeKey"]}"'
