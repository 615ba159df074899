"""Subscriptions: validating what a client asks for, keeping them, and finding which ones
a tenant change concerns. The HTTP side (handshake, deliveries) lives in delivery.py."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devtools.graphsim import rich, seed
from devtools.graphsim.clock import graph_time_precise, parse_time
from devtools.graphsim.tenant import Tenant
from devtools.graphsim.wire import GraphError, JsonObj

CHANGE_TYPES = ("created", "updated", "deleted")
MAX_CLIENT_STATE = 255
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Maximum lifetimes in minutes (Graph's documented limits).
MESSAGES_MAX_MINUTES = 10_080
MESSAGES_WITH_DATA_MAX_MINUTES = 1_440
USERS_MAX_MINUTES = 41_760

_USER = r"users/([^/()]+)"
_FOLDER = r"mailfolders(?:/([^/()]+)|\('([^']+)'\))"
_RESOURCES = (
    ("users", re.compile(r"users", re.I)),
    ("user", re.compile(_USER, re.I)),
    ("messages", re.compile(_USER + r"/messages", re.I)),
    ("folder_messages", re.compile(_USER + "/" + _FOLDER + r"/messages", re.I)),
)


def invalid(message: str) -> GraphError:
    """Graph's 400 for a subscription request it refuses before any handshake."""
    return GraphError(400, "InvalidRequest", message)


@dataclass(frozen=True)
class Target:
    """What a subscription's resource watches: all users, one user, or a mailbox (folder)."""

    kind: str  # "users" | "user" | "messages"
    user_id: str | None = None
    folder_id: str | None = None

    @property
    def max_minutes(self) -> int:
        """How far ahead expirationDateTime may be for this resource."""
        return MESSAGES_MAX_MINUTES if self.kind == "messages" else USERS_MAX_MINUTES


def parse_resource(resource: str, tenant: Tenant) -> Target:
    """Resolve a subscription resource (case-insensitive, leading slash optional)."""
    text = resource.strip().strip("/")
    for kind, pattern in _RESOURCES:
        match = pattern.fullmatch(text)
        if not match:
            continue
        if kind == "users":
            return Target("users")
        user = tenant.find_user(match.group(1))
        if kind == "user":
            return Target("user", user["id"])
        user = tenant.mailbox_of(user["id"])
        if kind == "messages":
            return Target("messages", user["id"])
        folder = match.group(2) or match.group(3)
        return Target("messages", user["id"], tenant.folder(user["id"], folder)[1])
    raise invalid(f"Resource '{resource}' is not supported by graphsim.")


EVENTHUB_PREFIX = "eventhub:"
_EVENTHUB_PATH = re.compile(r"/eventhubname/([A-Za-z0-9][A-Za-z0-9._-]{0,255})")


@dataclass(frozen=True)
class EventHubAddress:
    """An ``EventHub:https://<namespace>/eventhubname/<hub>?tenantId=<tenant>`` notification URL, parsed."""

    namespace: str
    hub: str
    tenant: str


def eventhub_address(url: str) -> EventHubAddress | None:
    """The hub a notification URL names (Graph's role-based form), None for a webhook URL; a malformed
    ``EventHub:`` URL is a 400, as on Graph. (Graph's Key Vault form is not simulated.)"""
    if not url.lower().startswith(EVENTHUB_PREFIX):
        return None
    parts = urlsplit(url[len(EVENTHUB_PREFIX) :])
    match = _EVENTHUB_PATH.fullmatch(parts.path)
    tenant = parse_qs(parts.query).get("tenantId", [""])[0]
    if parts.scheme != "https" or not parts.hostname or match is None or not tenant:
        raise invalid(
            "Invalid Event Hubs notification URL: expected "
            "EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<tenant>."
        )
    return EventHubAddress(parts.hostname.lower(), match.group(1), tenant)


def hub_validation_item() -> JsonObj:
    """The validation message Graph writes into an event hub when a subscription is created (to be ignored)."""
    request_id = uuid.uuid4()
    return {
        "subscriptionId": "NA",
        "subscriptionExpirationDateTime": "NA",
        "clientState": "NA",
        "changeType": f"Validation: Testing client application reachability for subscription Request-Id: {request_id}",
        "resource": "NA",
        "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"},
    }


def check_url(field_name: str, url: str) -> None:
    """https only, or http on loopback (as the SDK allows for local development); or an event hub."""
    if eventhub_address(url) is not None:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        return
    raise invalid(f"Invalid '{field_name}': the URL must use https (http only for localhost).")


def check_expiration(raw: Any, target: Target, include_resource_data: bool, now: datetime) -> datetime:
    """expirationDateTime must be in the future and within the resource's maximum lifetime."""
    if not isinstance(raw, str):
        raise invalid("'expirationDateTime' is required.")
    try:
        expiration = parse_time(raw)
    except ValueError:
        raise invalid(f"Invalid 'expirationDateTime': '{raw}'.") from None
    if expiration <= now:
        raise invalid("Subscription expiration date time must be in the future.")
    limit = target.max_minutes
    if target.kind == "messages" and include_resource_data:
        limit = MESSAGES_WITH_DATA_MAX_MINUTES
    if expiration > now + timedelta(minutes=limit):
        raise invalid(f"Subscription expiration can only be {limit} minutes in the future.")
    return expiration


@dataclass
class Subscription:
    """One subscription as Graph keeps it."""

    id: str
    resource: str
    target: Target
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    include_resource_data: bool
    latest_tls: str
    encryption_certificate: str | None = None  # rich notifications: base64 certificate (public key)
    encryption_certificate_id: str | None = None
    select: tuple[str, ...] = ()  # the resource's $select: what encryptedContent carries

    def as_json(self, base_url: str | None = None) -> JsonObj:
        """The subscription exactly as Graph returns it."""
        body: JsonObj = {}
        if base_url:
            body["@odata.context"] = f"{base_url}/$metadata#subscriptions/$entity"
        body.update(
            {
                "id": self.id,
                "resource": self.resource,
                "applicationId": seed.APPLICATION_ID,
                "changeType": ",".join(self.change_types),
                "clientState": self.client_state,
                "notificationUrl": self.notification_url,
                "notificationQueryOptions": None,
                "lifecycleNotificationUrl": self.lifecycle_url,
                "expirationDateTime": graph_time_precise(self.expiration),
                "creatorId": seed.CREATOR_ID,
                "includeResourceData": self.include_resource_data,
                "latestSupportedTlsVersion": self.latest_tls,
                "encryptionCertificate": self.encryption_certificate,
                "encryptionCertificateId": self.encryption_certificate_id,
                "notificationUrlAppId": None,
            }
        )
        return body

    def watches(self, kind: str, user_id: str, folder_id: str | None) -> bool:
        """Whether a change of ``kind`` ("user"/"message") for this user/folder concerns us."""
        if kind == "user":
            return self.target.kind == "users" or (self.target.kind == "user" and self.target.user_id == user_id)
        return (
            self.target.kind == "messages"
            and self.target.user_id == user_id
            and (self.target.folder_id is None or self.target.folder_id == folder_id)
        )


def build(body: JsonObj, tenant: Tenant, now: datetime) -> Subscription:
    """Validate a ``POST /subscriptions`` body into a (not yet stored) subscription."""
    for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not body.get(name):
            raise invalid(f"'{name}' is a required property for subscription creation.")
    raw_types = str(body["changeType"])
    change_types = tuple(t.strip() for t in raw_types.split(","))
    bad = [t for t in change_types if t not in CHANGE_TYPES]
    if bad or len(set(change_types)) != len(change_types):
        raise invalid(f"Invalid 'changeType' attribute: '{raw_types}'.")
    notification_url = str(body["notificationUrl"])
    check_url("notificationUrl", notification_url)
    lifecycle_url = body.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = str(lifecycle_url)
        check_url("lifecycleNotificationUrl", lifecycle_url)
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
        raise invalid(f"'clientState' must be a string of at most {MAX_CLIENT_STATE} characters.")
    include_data = bool(body.get("includeResourceData") or False)
    resource = str(body["resource"])
    path, select = rich.split_select(resource) if include_data else (resource, ())
    target = parse_resource(path, tenant)
    certificate = rich.check_certificate(body, target.kind, select) if include_data else (None, None)
    expiration = check_expiration(body["expirationDateTime"], target, include_data, now)
    return Subscription(
        id=str(uuid.uuid4()),
        resource=resource,
        target=target,
        change_types=change_types,
        notification_url=notification_url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        include_resource_data=include_data,
        latest_tls=str(body.get("latestSupportedTlsVersion") or "v1_2"),
        encryption_certificate=certificate[0],
        encryption_certificate_id=certificate[1],
        select=select,
    )


class SubscriptionStore:
    """Live subscriptions; one whose expiration passed on the simulator clock is gone."""

    def __init__(self) -> None:
        self._items: dict[str, Subscription] = {}

    def add(self, subscription: Subscription) -> None:
        """Keep a subscription that passed validation and the handshake."""
        self._items[subscription.id] = subscription

    def purge(self, now: datetime) -> None:
        """Forget subscriptions that expired."""
        for sub_id in [s.id for s in self._items.values() if s.expiration <= now]:
            del self._items[sub_id]

    def get(self, sub_id: str, now: datetime) -> Subscription:
        """A live subscription, else Graph's 404."""
        self.purge(now)
        subscription = self._items.get(sub_id)
        if subscription is None:
            raise GraphError(404, "ResourceNotFound", f"The object was not found: subscription '{sub_id}'.")
        return subscription

    def remove(self, sub_id: str) -> Subscription | None:
        """Delete a subscription; returns it when it existed."""
        return self._items.pop(sub_id, None)

    def live(self, now: datetime) -> list[Subscription]:
        """Every unexpired subscription, oldest first."""
        self.purge(now)
        return list(self._items.values())

    def clear(self) -> None:
        """Forget everything (reset)."""
        self._items.clear()
