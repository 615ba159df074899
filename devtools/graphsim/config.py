"""Simulator settings: what the CLI sets at start and ``PUT /_sim/config`` may change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Settings a running simulator may change; the rest need a reset (tenant shape) or a restart.
RUNTIME_KEYS = frozenset(
    {
        "latency_ms",
        "delivery_timeout_s",
        "delivery_max_attempts",
        "delivery_backoff_s",
        "delivery_backoff_max_s",
        "max_items_per_post",
        "handshake_timeout_s",
        "message_paging",
        "eventhub_endpoint",
    }
)
TENANT_KEYS = frozenset({"seed", "users", "messages_per_user"})
# How message lists page: "skip" (nextLink carries $top/$skip, as Outlook does today) or "skiptoken"
# (an opaque $skiptoken, as Graph may send; clients must follow nextLink without reading it).
MESSAGE_PAGING = ("skip", "skiptoken")


class ConfigError(ValueError):
    """A control request asked for a setting that does not exist or is out of range."""


@dataclass(frozen=True)
class SimConfig:
    """Everything tunable; frozen so a change is always a whole new, validated value."""

    seed: int = 42
    users: int = 50
    messages_per_user: int = 30
    latency_ms: float = 0.0
    token: str | None = None
    delivery_timeout_s: float = 3.0
    delivery_max_attempts: int = 4
    delivery_backoff_s: float = 1.0
    delivery_backoff_max_s: float = 30.0
    max_items_per_post: int = 100
    handshake_timeout_s: float = 10.0
    message_paging: str = "skip"
    # Where EventHub: notification URLs are delivered: a stand-in namespace's loopback base URL ("" = none).
    eventhub_endpoint: str = ""

    def __post_init__(self) -> None:
        checks = {
            "users": 0 <= self.users <= 100_000,
            "messages_per_user": 0 <= self.messages_per_user <= 100_000,
            "latency_ms": 0 <= self.latency_ms <= 60_000,
            "delivery_timeout_s": 0 < self.delivery_timeout_s <= 600,
            "delivery_max_attempts": 1 <= self.delivery_max_attempts <= 100,
            "delivery_backoff_s": 0 <= self.delivery_backoff_s <= 3600,
            "delivery_backoff_max_s": 0 <= self.delivery_backoff_max_s <= 3600,
            "max_items_per_post": 1 <= self.max_items_per_post <= 10_000,
            "handshake_timeout_s": 0 < self.handshake_timeout_s <= 600,
            "message_paging": self.message_paging in MESSAGE_PAGING,
            "eventhub_endpoint": self.eventhub_endpoint == "" or self.eventhub_endpoint.startswith("http://127.0.0.1:"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"out of range: {', '.join(bad)}")

    def updated(self, changes: dict[str, Any], allowed: frozenset[str]) -> SimConfig:
        """Return a copy with ``changes`` applied, refusing unknown keys and wrong types."""
        unknown = set(changes) - allowed
        if unknown:
            raise ConfigError(f"unknown or read-only setting(s): {', '.join(sorted(unknown))}")
        types = {f.name: f.type for f in dataclasses.fields(self)}
        coerced: dict[str, Any] = {}
        for key, value in changes.items():
            if types[key] == "str":
                if not isinstance(value, str):
                    raise ConfigError(f"{key} must be a string")
                coerced[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key} must be a number")
            coerced[key] = int(value) if types[key] == "int" else float(value)
            if types[key] == "int" and value != int(value):
                raise ConfigError(f"{key} must be an integer")
        return dataclasses.replace(self, **coerced)

    def public(self) -> dict[str, Any]:
        """The settings as JSON, without the token (it is a credential of sorts)."""
        data = dataclasses.asdict(self)
        data.pop("token")
        return data
