"""host.json, app settings and ``%NAME%`` binding expressions, read the way the Functions host reads them.

Everything the harness takes from configuration is parsed here once, so the listeners get typed values
and a malformed host.json fails at start, not on the first message.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUNCTION_KEY_SETTING = "FUNCHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "FUNCHOST_MASTER_KEY"
SHUTDOWN_TIMEOUT_SETTING = "FUNCHOST_SHUTDOWN_TIMEOUT"
STATE_DIR_SETTING = "FUNCHOST_STATE_DIR"
# How long a fetched queue message stays invisible while it runs (seconds); the host's is 10 minutes. Tests
# shorten it so a message a killed instance held comes back in seconds.
QUEUE_RECEIVE_LEASE_SETTING = "FUNCHOST_QUEUE_RECEIVE_LEASE"
DEFAULT_QUEUE_RECEIVE_LEASE = 600.0
# App settings that override host.json values, as on the host: AzureFunctionsJobHost__extensions__queues__batchSize.
HOST_JSON_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
# The host ID (the host's app setting); it names the singleton lock blobs of the app's timers.
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
# The host's request body limit is an app setting (bytes), not a host.json option.
REQUEST_BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DEFAULT_REQUEST_BODY_LIMIT = 104_857_600  # 100 MB, the host's (and Core Tools') default

# The host's defaults (extensions.queues in host.json, Storage extension 5.x).
DEFAULT_BATCH_SIZE = 16
MAX_BATCH_SIZE = 32
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_MAX_POLLING_INTERVAL = 60.0
MIN_POLLING_INTERVAL = 0.1
# functionTimeout when host.json does not set it: the host's default outside the Consumption plan.
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
# host.json singleton.listenerLockPeriod and listenerLockRecoveryPollingInterval: the host's defaults, 1 min.
DEFAULT_LISTENER_LOCK_PERIOD = 60.0

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?$")
_EXPRESSION = re.compile(r"%([^%]+)%")


class ConfigError(ValueError):
    """host.json, a setting or a binding expression is not usable; the message names which."""


def parse_timespan(value: object, *, number_unit: float = 1.0) -> float:
    """Seconds from a .NET TimeSpan string (``[d.]hh:mm[:ss[.fffffff]]``) or a JSON number.

    A number is multiplied by ``number_unit`` (host.json v1 gave ``maxPollingInterval`` in milliseconds,
    so callers pass ``0.001`` there).
    """
    if isinstance(value, bool):
        raise ConfigError(f"not a TimeSpan: {value!r}")
    if isinstance(value, int | float):
        return float(value) * number_unit
    if not isinstance(value, str):
        raise ConfigError(f"not a TimeSpan: {value!r}")
    match = _TIMESPAN.match(value.strip())
    if match is None:
        raise ConfigError(f"not a TimeSpan (expected hh:mm:ss): {value!r}")
    fraction = match["f"] or "0"
    return float(
        int(match["days"] or 0) * 86400
        + int(match["h"]) * 3600
        + int(match["m"]) * 60
        + int(match["s"] or 0)
        + int(fraction) / 10 ** len(fraction)
    )


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` from host.json, with the host's defaults."""

    batch_size: int = DEFAULT_BATCH_SIZE
    new_batch_threshold: int = DEFAULT_BATCH_SIZE // 2
    max_polling_interval: float = DEFAULT_MAX_POLLING_INTERVAL
    visibility_timeout: float = 0.0
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    message_encoding: str = "base64"

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> QueueOptions:
        lowered = {k.lower(): v for k, v in raw.items()}
        batch_size = int(lowered.get("batchsize", DEFAULT_BATCH_SIZE))
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"extensions.queues.batchSize must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        threshold = int(lowered.get("newbatchthreshold", batch_size // 2))
        if threshold < 0:
            raise ConfigError(f"extensions.queues.newBatchThreshold must be >= 0, got {threshold}")
        polling = parse_timespan(
            lowered.get("maxpollinginterval", DEFAULT_MAX_POLLING_INTERVAL * 1000), number_unit=0.001
        )
        visibility = parse_timespan(lowered.get("visibilitytimeout", 0))
        dequeue = int(lowered.get("maxdequeuecount", DEFAULT_MAX_DEQUEUE_COUNT))
        if dequeue < 1:
            raise ConfigError(f"extensions.queues.maxDequeueCount must be >= 1, got {dequeue}")
        encoding = str(lowered.get("messageencoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ConfigError(f"extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=threshold,
            max_polling_interval=max(polling, MIN_POLLING_INTERVAL),
            visibility_timeout=visibility,
            max_dequeue_count=dequeue,
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class SingletonOptions:
    """host.json ``singleton``: the listener lock that makes a timer fire on one instance only.

    The lock is a blob lease, so its period must be one Blob Storage accepts (15 to 60 s).
    """

    listener_lock_period: float = DEFAULT_LISTENER_LOCK_PERIOD
    listener_lock_recovery_polling_interval: float = DEFAULT_LISTENER_LOCK_PERIOD

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SingletonOptions:
        lowered = {k.lower(): v for k, v in raw.items()}
        period = parse_timespan(lowered.get("listenerlockperiod", DEFAULT_LISTENER_LOCK_PERIOD))
        if not 15 <= period <= 60:
            raise ConfigError(f"singleton.listenerLockPeriod must be 00:00:15..00:01:00 (a blob lease), got {period}")
        recovery = parse_timespan(lowered.get("listenerlockrecoverypollinginterval", DEFAULT_LISTENER_LOCK_PERIOD))
        if recovery <= 0:
            raise ConfigError(f"singleton.listenerLockRecoveryPollingInterval must be positive, got {recovery}")
        return cls(listener_lock_period=period, listener_lock_recovery_polling_interval=recovery)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the harness honours."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    eventhub_max_batch: int = 100  # extensions.eventHubs.maxEventBatchSize
    singleton: SingletonOptions = field(default_factory=SingletonOptions)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HostConfig:
        """Parse a host.json document (version 2.0 layout: settings under ``extensions``)."""
        extensions = _section(raw, "extensions")
        http = _section(extensions, "http")
        prefix = http.get("routePrefix", "api")
        if not isinstance(prefix, str):
            raise ConfigError(f"extensions.http.routePrefix must be a string, got {prefix!r}")
        timeout_raw = raw.get("functionTimeout", DEFAULT_FUNCTION_TIMEOUT)
        unbounded = timeout_raw is None or timeout_raw == "-1"
        timeout = None if unbounded else parse_timespan(timeout_raw)
        batch = _section(extensions, "eventHubs").get("maxEventBatchSize", 100)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"extensions.eventHubs.maxEventBatchSize must be a positive integer, got {batch!r}")
        return cls(
            route_prefix=prefix.strip("/"),
            queues=QueueOptions.from_json(_section(extensions, "queues")),
            function_timeout=timeout,
            eventhub_max_batch=batch,
            singleton=SingletonOptions.from_json(_section(raw, "singleton")),
        )


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"host.json section {name!r} must be an object")
    return value


def with_setting_overrides(host_json: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """host.json with the values that app settings override, as the host reads them:
    ``AzureFunctionsJobHost__extensions__queues__batchSize=8`` sets ``extensions.queues.batchSize`` to "8"
    (path segments match case-insensitively; missing sections are created)."""
    result: dict[str, Any] = json.loads(json.dumps(dict(host_json)))
    for key, value in env.items():
        if not key.startswith(HOST_JSON_OVERRIDE_PREFIX):
            continue
        *sections, leaf = key[len(HOST_JSON_OVERRIDE_PREFIX) :].split("__")
        node = result
        for name in sections:
            existing = next((k for k in node if k.lower() == name.lower()), name)
            child = node.get(existing)
            if not isinstance(child, dict):
                child = node[existing] = {}
            node = child
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value
    return result


def host_id(env: Mapping[str, str], app_dir: Path) -> str:
    """``AzureFunctionsWebHost__hostid``, else one made from the app folder's name the way the host makes it
    from the app's name (lower case, at most 32 characters)."""
    explicit = next((v for k, v in env.items() if k.lower() == HOST_ID_SETTING.lower() and v), "")
    if explicit:
        return explicit.lower()
    name = re.sub(r"[^a-z0-9-]", "-", app_dir.name.lower()).strip("-") or "funchost"
    return name[:32].rstrip("-")


def queue_receive_lease(env: Mapping[str, str]) -> float:
    """``FUNCHOST_QUEUE_RECEIVE_LEASE`` seconds (the host's 10 minutes when unset); at least 1 s."""
    lease = float_setting(env, QUEUE_RECEIVE_LEASE_SETTING, DEFAULT_QUEUE_RECEIVE_LEASE)
    if lease < 1:
        raise ConfigError(f"setting {QUEUE_RECEIVE_LEASE_SETTING} must be at least 1 second, got {lease}")
    return lease


def load_host_json(app_dir: Path) -> dict[str, Any]:
    """The app's host.json as a dict, or an empty one when the app has none (all defaults)."""
    path = app_dir / "host.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def load_settings_file(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``Values`` of a local.settings.json into ``environ`` for keys not already set.

    Like Core Tools, real environment variables win over the file. Returns the keys that were applied.
    A missing file is not an error (the file is optional and never committed).
    """
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    values = data.get("Values", {}) if isinstance(data, dict) else {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: 'Values' must be an object")
    applied = []
    for key, value in values.items():
        if key not in environ:
            environ[key] = "" if value is None else str(value)
            applied.append(key)
    return applied


def resolve_expression(value: str, env: Mapping[str, str]) -> str:
    """Replace each ``%NAME%`` with the app setting ``NAME``, as the host does for trigger attributes."""

    def _lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"binding expression '%{name}%' refers to an app setting that is not set")
        return env[name]

    return _EXPRESSION.sub(_lookup, value)


@dataclass(frozen=True)
class StorageConnection:
    """Where a binding's storage is: a connection string, or a queue endpoint reached with a managed
    identity (``client_id`` names a user-assigned one; None means the system-assigned identity)."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None


def storage_connection(connection: str | None, env: Mapping[str, str]) -> StorageConnection:
    """The storage a binding's ``connection`` names, resolved like the host does.

    The name is looked up as given, then with the ``AzureWebJobs`` prefix; an empty name means
    ``AzureWebJobsStorage``. A value there is a connection string; otherwise the identity-based shapes
    ``<name>__queueServiceUri`` (or ``__serviceUri``) or ``<name>__accountName``, with ``__credential``
    (only ``managedidentity``) and ``__clientId``.
    """
    name = connection or DEFAULT_STORAGE_SETTING
    for candidate in (name, f"AzureWebJobs{name}"):
        value = env.get(candidate)
        if value:
            return StorageConnection(connection_string=value)
        uri = env.get(f"{candidate}__queueServiceUri") or env.get(f"{candidate}__serviceUri")
        account = env.get(f"{candidate}__accountName")
        if not (uri or account):
            continue
        credential = env.get(f"{candidate}__credential") or "managedidentity"
        if credential.lower() != "managedidentity":
            raise ConfigError(f"{candidate}__credential: only 'managedidentity' is supported, got {credential!r}")
        endpoint = uri or f"https://{account}.queue.core.windows.net"
        if not endpoint.startswith("https://"):
            raise ConfigError(f"{candidate}: identity-based connections need an https endpoint, got {endpoint!r}")
        return StorageConnection(
            queue_service_uri=endpoint.rstrip("/"), client_id=env.get(f"{candidate}__clientId") or None
        )
    raise ConfigError(
        f"connection setting {name!r} is not set (expected a Storage connection string, "
        f"or {name}__accountName / {name}__queueServiceUri for an identity-based connection)"
    )


@dataclass(frozen=True)
class HostKeys:
    """The function key and master key that authorize HTTP calls; ``generated`` names the keys made up
    at start because their setting was empty (they must then be printed, or nobody can call in)."""

    function_key: str
    master_key: str
    generated: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HostKeys:
        function_key = env.get(FUNCTION_KEY_SETTING) or ""
        master_key = env.get(MASTER_KEY_SETTING) or ""
        generated = tuple(
            name for name, key in ((FUNCTION_KEY_SETTING, function_key), (MASTER_KEY_SETTING, master_key)) if not key
        )
        return cls(
            function_key=function_key or secrets.token_urlsafe(32),
            master_key=master_key or secrets.token_urlsafe(32),
            generated=generated,
        )


def float_setting(env: Mapping[str, str], name: str, default: float) -> float:
    """A numeric setting, or ``default`` when unset; a malformed value fails loudly."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name} must be a number, got {raw!r}") from exc


def request_body_limit(env: Mapping[str, str]) -> int:
    """``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` in bytes (default 100 MB); a malformed value fails loudly."""
    raw = env.get(REQUEST_BODY_LIMIT_SETTING)
    if raw is None or raw.strip() == "":
        return DEFAULT_REQUEST_BODY_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {REQUEST_BODY_LIMIT_SETTING} must be a number of bytes, got {raw!r}") from exc
    if limit <= 0:
        raise ConfigError(f"setting {REQUEST_BODY_LIMIT_SETTING} must be positive, got {limit}")
    return limit


def state_dir(env: Mapping[str, str]) -> Path | None:
    """Where timer schedule status is persisted between runs, or None to keep it in memory only."""
    raw = env.get(STATE_DIR_SETTING)
    return Path(raw) if raw else None


def eventhub_namespace(connection: str | None, env: Mapping[str, str]) -> str:
    """The namespace host an Event Hubs binding's ``connection`` names, resolved like the host does: a
    connection string (``Endpoint=sb://<ns>/;...``) in the setting itself, else the identity-based
    ``<connection>__fullyQualifiedNamespace``."""
    name = connection or "AzureWebJobsEventHub"
    value = env.get(name, "").strip()
    if value:
        for part in value.split(";"):
            key, _, endpoint = part.partition("=")
            if key.strip().lower() == "endpoint":
                return endpoint.strip().removeprefix("sb://").strip("/").lower()
        raise ConfigError(f"the connection string in '{name}' has no Endpoint")
    host = env.get(f"{name}__fullyQualifiedNamespace", "").strip()
    if not host:
        raise ConfigError(f"Event Hubs connection '{name}' is not set ({name}__fullyQualifiedNamespace or {name})")
    return host.lower()


def is_disabled(function_name: str, env: Mapping[str, str]) -> bool:
    """The host's ``AzureWebJobs.<name>.Disabled`` app setting."""
    value = env.get(f"AzureWebJobs.{function_name}.Disabled", "")
    return value.strip().lower() in ("1", "true")


def environ() -> MutableMapping[str, str]:
    """The process environment (a seam so tests can pass their own mapping instead)."""
    return os.environ
