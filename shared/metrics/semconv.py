"""Span names and attributes after the OpenTelemetry semantic conventions (pure functions, no SDK import).

- HTTP client spans (Graph requests): ``http.request.method``, ``url.full``, ``server.address``,
  ``server.port``, ``http.response.status_code``, ``error.type``; the name is the method (no URL template).
- Messaging spans (Storage queues): ``send <queue>`` (CLIENT: the send's context is not put into the message,
  so it is not the message's creation context) and ``process <queue>`` (CONSUMER), with ``messaging.system``,
  ``messaging.destination.name``, ``messaging.operation.type`` / ``.name``.
- Database spans (Table Storage): ``<operation> <table>`` (CLIENT) with ``db.system.name``,
  ``db.collection.name``, ``db.namespace`` (the account), ``db.operation.name``, ``server.*``.

Neither Azure Queue Storage nor Table Storage has a well-known ``messaging.system`` / ``db.system.name``
value (the lists name Service Bus, Event Hubs, Event Grid and Cosmos DB only), so the values below are
custom ones in the ``azure.*`` style the conventions use. ``url.full`` never carries credentials: user info
is dropped and the values of query parameters that are tokens or signatures are replaced by ``REDACTED``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
MESSAGING_SYSTEM = "azure.queue_storage"
DB_SYSTEM = "azure.table_storage"
AZURE_NAMESPACE = "azure.resource_provider.namespace"

# Query keys whose values are credentials or opaque continuation tokens ($skiptoken, $deltatoken: a page or
# delta position that grants the next read); matched case-insensitively, without a leading '$'.
_SECRET_KEYS = ("token", "sig", "signature", "secret", "password", "code", "key", "clientstate", "credential")

# Queue client methods that are messaging operations: (operation type, operation name).
_QUEUE_OPERATIONS = {
    "send_message": ("send", "send"),
    "receive_message": ("receive", "receive"),
    "receive_messages": ("receive", "receive"),
    "peek_messages": ("receive", "peek"),
    "delete_message": ("settle", "delete"),
    "update_message": ("settle", "update"),
}


def _secret_key(key: str) -> bool:
    name = key.lower().lstrip("$")
    return any(part in name for part in _SECRET_KEYS)


def safe_url(url: str) -> str:
    """``url`` without user info or fragment, and with token-like query values replaced by ``REDACTED``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    query = parse_qsl(parts.query, keep_blank_values=True)
    cleaned = urlencode([(k, REDACTED if _secret_key(k) else v) for k, v in query], safe="$,/:'()@!*")
    return urlunsplit((parts.scheme, netloc, parts.path, cleaned, ""))


def server(url: str) -> dict[str, str | int]:
    """``server.address`` and ``server.port`` (the scheme's default when the URL names none)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname or "", "server.port": port}


def http_client(method: str, url: str) -> tuple[str, dict[str, str | int]]:
    """The name and start attributes of an HTTP client span."""
    return method, {"http.request.method": method, "url.full": safe_url(url), **server(url)}


def queue_call(method: str, queue: str, url: str) -> tuple[str, str, dict[str, str | int]] | None:
    """(name, kind, attributes) of a messaging span for a queue client method; None when it is not a
    messaging operation (creating or clearing a queue, reading its properties)."""
    operation = _QUEUE_OPERATIONS.get(method)
    if operation is None:
        return None
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": operation[0],
        "messaging.operation.name": operation[1],
        AZURE_NAMESPACE: "Microsoft.Storage",
        **server(url),
    }
    return f"{operation[1]} {queue}", "client", attributes


def table_call(method: str, table: str, account: str, url: str) -> tuple[str, str, dict[str, str | int]]:
    """(name, kind, attributes) of a database span for a table client method."""
    attributes: dict[str, str | int] = {
        "db.system.name": DB_SYSTEM,
        "db.collection.name": table,
        "db.namespace": account,
        "db.operation.name": method,
        AZURE_NAMESPACE: "Microsoft.Storage",
        **server(url),
    }
    return f"{method} {table}", "client", attributes


def queue_process(queue: str, message_id: str, dequeue_count: int) -> tuple[str, str, dict[str, str | int]]:
    """(name, kind, attributes) of the span of one queue-triggered message's processing."""
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": message_id,
        "graphapp.queue.dequeue_count": dequeue_count,
    }
    return f"process {queue}", "consumer", attributes
