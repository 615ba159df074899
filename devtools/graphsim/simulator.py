"""The simulator's state in one place, and the one path every tenant change takes:
mutate the tenant, record it for delta queries, notify the subscriptions it concerns."""

from __future__ import annotations

from typing import Any

from devtools.graphsim import seed
from devtools.graphsim.clock import SimClock, graph_time_precise
from devtools.graphsim.config import TENANT_KEYS, SimConfig
from devtools.graphsim.delivery import Deliverer
from devtools.graphsim.delta import USERS_SCOPE, ChangeLog, mail_scope, members_scope
from devtools.graphsim.faults import FaultRegistry
from devtools.graphsim.observability import RequestLog
from devtools.graphsim.rich import RichNotifications
from devtools.graphsim.service_principals import ServicePrincipals
from devtools.graphsim.subscriptions import Subscription, SubscriptionStore
from devtools.graphsim.tenant import Tenant, etag
from devtools.graphsim.wire import GraphError, JsonObj

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


class Simulator:
    """Tenant, clock, delta log, subscriptions, faults, deliveries and logs of one server."""

    def __init__(self, config: SimConfig) -> None:
        self.startup_config = config
        self.config = config
        self.clock = SimClock()
        self.tenant = Tenant(config.seed, config.users, config.messages_per_user)
        self.changes = ChangeLog()
        self.subscriptions = SubscriptionStore()
        self.service_principals = ServicePrincipals.seeded()
        self.faults = FaultRegistry()
        self.requests = RequestLog()
        self.deliveries = Deliverer(lambda: self.config, self.clock)
        self.rich = RichNotifications()
        self.deliveries.body_extras = self.rich.body_extras
        self._user_sequence = 0

    async def reset(self, overrides: dict[str, Any] | None = None) -> None:
        """Back to a freshly seeded state (optionally with another seed/size/latency)."""
        allowed = TENANT_KEYS | {"latency_ms"}
        self.config = self.startup_config.updated(overrides or {}, allowed)
        await self.deliveries.reset()
        self.clock.reset()
        self.tenant = Tenant(self.config.seed, self.config.users, self.config.messages_per_user)
        self.changes = ChangeLog()
        self.subscriptions.clear()
        self.service_principals = ServicePrincipals.seeded()
        self.faults.clear()
        self.requests.clear()
        self.rich.reset()
        self._user_sequence = 0

    # Users ---------------------------------------------------------------------------
    def create_user(self, fields: JsonObj) -> JsonObj:
        """Add a user, then publish ``created``."""
        user = self.tenant.create_user(fields, self.clock.now())
        self._publish_user("created", user["id"])
        return user

    def update_user(self, key: str, fields: JsonObj) -> JsonObj:
        """Change a user, then publish ``updated``."""
        user = self.tenant.update_user(key, fields)
        self._publish_user("updated", user["id"], frozenset(fields))
        return user

    def delete_user(self, key: str) -> JsonObj:
        """Remove a user (and mailbox, and memberships), then publish ``deleted``."""
        member_of = [g for g, members in self.tenant.members.items() if self.tenant.find_user(key)["id"] in members]
        user, _ = self.tenant.delete_user(key)
        for group_id in member_of:
            self.changes.record(members_scope(group_id), user["id"], removed=True)
        self._publish_user("deleted", user["id"])
        return user

    def set_mailbox(self, key: str, enabled: bool) -> JsonObj:
        """Licence a user's mailbox or take the licence away (Outlook then answers 404 for it)."""
        return self.tenant.set_mailbox(key, enabled)

    # Groups --------------------------------------------------------------------------
    def create_group(self, fields: JsonObj) -> JsonObj:
        """A security group with its first members (recorded for the members delta)."""
        group = self.tenant.create_group(fields, self.clock.now())
        for member_id in self.tenant.members[group["id"]]:
            self.changes.record(members_scope(group["id"]), member_id)
        return group

    def add_member(self, group_key: str, member_key: str) -> str:
        group_id = self.tenant.find_group(group_key)["id"]
        member_id = self.tenant.add_member(group_id, member_key)
        self.changes.record(members_scope(group_id), member_id)
        return member_id

    def remove_member(self, group_key: str, member_id: str) -> None:
        group_id = self.tenant.find_group(group_key)["id"]
        self.tenant.remove_member(group_id, member_id)
        self.changes.record(members_scope(group_id), member_id.lower(), removed=True)

    def _publish_user(self, change_type: str, user_id: str, fields: frozenset[str] | None = None) -> None:
        self.changes.record(USERS_SCOPE, user_id, removed=change_type == "deleted", fields=fields)
        self._user_sequence += 1
        resource = f"Users/{user_id}"
        data = {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": resource,
            "id": user_id,
            "organizationId": seed.TENANT_ID,
            "sequenceNumber": self._user_sequence,
        }
        self._notify(change_type, "user", user_id, None, resource, data)

    # Messages ------------------------------------------------------------------------
    def create_messages(self, user_key: str, fields: JsonObj, count: int) -> list[JsonObj]:
        """Deliver new messages, publishing ``created`` for each."""
        messages = self.tenant.create_messages(user_key, fields, count, self.clock.now())
        user_id = self.tenant.find_user(user_key)["id"]
        for message in messages:
            self._publish_message("created", user_id, message)
        return messages

    def update_message(self, user_key: str, message_id: str, fields: JsonObj) -> JsonObj:
        """Change (or move) a message, publishing ``updated``."""
        user_id = self.tenant.find_user(user_key)["id"]
        old_folder = self.tenant.find_message(user_id, message_id)["parentFolderId"]
        message = self.tenant.update_message(user_key, message_id, fields, self.clock.now())
        if message["parentFolderId"] != old_folder:
            self.changes.record(mail_scope(user_id, old_folder), message_id, removed=True)
        self._publish_message("updated", user_id, message)
        return message

    def delete_message(self, user_key: str, message_id: str) -> JsonObj:
        """Remove a message, publishing ``deleted``."""
        user, message = self.tenant.delete_message(user_key, message_id)
        self._publish_message("deleted", user["id"], message)
        return message

    def _publish_message(self, change_type: str, user_id: str, message: JsonObj) -> None:
        folder_id = message["parentFolderId"]
        self.changes.record(mail_scope(user_id, folder_id), message["id"], removed=change_type == "deleted")
        resource = f"Users/{user_id}/Messages/{message['id']}"
        data: JsonObj = {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": resource}
        if change_type != "deleted":
            data["@odata.etag"] = etag(message)
        data["id"] = message["id"]
        self._notify(change_type, "message", user_id, folder_id, resource, data, message)

    def _notify(
        self,
        change_type: str,
        kind: str,
        user_id: str,
        folder_id: str | None,
        resource: str,
        data: JsonObj,
        message: JsonObj | None = None,
    ) -> None:
        for sub in self.subscriptions.live(self.clock.now()):
            if change_type not in sub.change_types or not sub.watches(kind, user_id, folder_id):
                continue
            item = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": graph_time_precise(sub.expiration),
                "changeType": change_type,
                "resource": resource,
                "resourceData": data,
                "clientState": sub.client_state,
                "tenantId": seed.TENANT_ID,
            }
            if sub.include_resource_data and message is not None and change_type != "deleted":
                item["encryptedContent"] = self.rich.encrypted_content(sub, message)
            self.deliveries.enqueue("notification", sub.notification_url, [item])

    # Subscriptions -------------------------------------------------------------------------
    def lifecycle(self, sub_id: str, event: str) -> Subscription:
        """Send a lifecycle event to a subscription's lifecycle URL (``subscriptionRemoved``
        also deletes the subscription, as Graph has by then)."""
        if event not in LIFECYCLE_EVENTS:
            raise GraphError(400, "BadRequest", f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
        sub = self.subscriptions.get(sub_id, self.clock.now())
        if not sub.lifecycle_url:
            raise GraphError(400, "BadRequest", "the subscription has no lifecycleNotificationUrl")
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time_precise(sub.expiration),
            "tenantId": seed.TENANT_ID,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self.deliveries.enqueue("lifecycle", sub.lifecycle_url, [item])
        if event == "subscriptionRemoved":
            self.subscriptions.remove(sub.id)
        return sub
