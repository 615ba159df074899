"""One frozen ``Settings`` object read from app settings (environment variables), validated once.

Reading collects every problem before failing, so one ``ConfigurationError`` names each bad setting and
what was expected. Secret values are wrapped in ``Secret`` and never appear in ``repr``, logs or errors.
The reader also records what it read (name, default, description) so the README's settings table can be
checked against the code (``python -m shared.settings`` prints it).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

GraphAuthMode = Literal["client_secret", "certificate", "managed_identity", "static_token"]
LogFormat = Literal["text", "json"]
StorageOutagePolicy = Literal["fail_open", "fail_closed"]

_T = TypeVar("_T", int, float)
_MAX_SETTING_LENGTH = 64 * 1024


class Secret:
    """A setting value that must not leak: ``repr``/``str`` hide it; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class SettingSpec:
    """What the reader knows about one setting: used for docs and the sample-file check."""

    name: str
    default: str | None
    description: str
    secret: bool = False


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on localhost or a loopback address (where plain http is acceptable)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads typed values from a mapping, recording specs and collecting errors instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []
        self.specs: list[SettingSpec] = []

    def _raw(self, name: str, default: str | None, description: str, secret: bool = False) -> str | None:
        self.specs.append(SettingSpec(name, default, description, secret))
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        if len(value) > _MAX_SETTING_LENGTH:
            self.errors.append(f"{name}: expected at most {_MAX_SETTING_LENGTH} characters, got {len(value)}")
            return default
        return value.strip()

    def _bad(self, name: str, expected: str, value: str, secret: bool = False) -> None:
        shown = f"a value of {len(value)} characters" if secret else repr(value[:80])
        self.errors.append(f"{name}: expected {expected}, got {shown}")

    def text(self, name: str, default: str | None, description: str, *, pattern: str | None = None) -> str | None:
        value = self._raw(name, default, description)
        if value is not None and pattern is not None and not re.fullmatch(pattern, value):
            self._bad(name, f"a value matching {pattern}", value)
            return default
        return value

    def required_text(self, name: str, description: str) -> str:
        value = self._raw(name, None, description)
        if value is None:
            self.errors.append(f"{name}: required ({description})")
            return ""
        return value

    def secret(self, name: str, description: str, *, required: bool = False) -> Secret | None:
        value = self._raw(name, None, description, secret=True)
        if value is None:
            if required:
                self.errors.append(f"{name}: required ({description})")
            return None
        return Secret(value)

    def number(self, name: str, default: _T, description: str, *, low: _T, high: _T) -> _T:
        raw = self._raw(name, str(default), description) or str(default)
        kind = type(default)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or not (low <= value <= high) or value != value:  # value != value: NaN
            word = "an integer" if kind is int else "a number"
            self._bad(name, f"{word} from {low} to {high}", raw)
            return default
        return value

    def boolean(self, name: str, default: bool, description: str) -> bool:
        raw = self._raw(name, "true" if default else "false", description) or ""
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        self._bad(name, "true or false", raw)
        return default

    def choice(self, name: str, default: str, description: str, choices: tuple[str, ...]) -> str:
        raw = self._raw(name, default, description) or default
        if raw not in choices:
            self._bad(name, "one of " + ", ".join(choices), raw)
            return default
        return raw

    def url(self, name: str, default: str | None, description: str) -> str | None:
        raw = self._raw(name, default, description)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            self._bad(name, "an absolute http(s) URL", raw)
            return default
        if parts.scheme == "http" and not is_loopback_url(raw):
            self._bad(name, "https (plain http is allowed only for localhost/127.0.0.1/[::1])", raw)
            return default
        return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment. Build with ``Settings.from_env()``."""

    storage_connection_string: Secret
    storage_table_prefix: str
    graph_base_url: str
    graph_auth_mode: GraphAuthMode
    graph_tenant_id: str | None
    graph_client_id: str | None
    graph_client_secret: Secret | None
    graph_certificate_path: str | None
    graph_certificate_password: Secret | None
    graph_static_token: Secret | None
    graph_timeout_seconds: float
    health_probe_timeout_seconds: float
    log_level: str
    log_format: LogFormat
    cache_l1_ttl_seconds: float
    cache_l1_max_entries: int
    cache_user_ttl_seconds: float
    cache_messages_ttl_seconds: float
    cache_max_stale_seconds: float
    cache_negative_ttl_seconds: float
    retry_max_attempts: int
    retry_budget_seconds: float
    retry_max_retry_after_seconds: float
    breaker_failure_ratio: float
    breaker_min_calls: int
    breaker_window_seconds: float
    breaker_consecutive_failures: int
    breaker_open_seconds: float
    breaker_max_open_seconds: float
    breaker_storage_outage: StorageOutagePolicy
    graph_mailbox_concurrency: int
    webhook_max_body_bytes: int
    forward_enrich: bool
    webhook_base_url: str | None
    graph_subscriptions: str
    subscription_renewal_schedule: str
    subscription_renew_before_hours: float
    maintenance_schedule: str
    applicationinsights_connection_string: Secret | None = field(default=None)

    @property
    def graph_mode(self) -> Literal["simulator", "real"]:
        """``simulator`` when Graph is on this machine (the embedded default), else ``real``."""
        return "simulator" if is_loopback_url(self.graph_base_url) else "real"

    @property
    def graph_scope(self) -> str:
        """The OAuth scope for app-only tokens: ``<graph host>/.default`` (national clouds included)."""
        parts = urlsplit(self.graph_base_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate; raise one ``ConfigurationError`` listing every problem."""
        settings, errors, _ = _read(os.environ if env is None else env)
        if errors:
            raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(errors))
        return settings

    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Every setting the app reads, in order, with default and description."""
        return _read({})[2]


def _read(env: Mapping[str, str]) -> tuple[Settings, list[str], list[SettingSpec]]:
    r = _Reader(env)
    storage = r.secret(
        "AzureWebJobsStorage", "Storage connection string for tables, queues and queue triggers", required=True
    )
    table_prefix = r.text(
        "STORAGE_TABLE_PREFIX",
        "graphfn",
        "prefix of every table the app creates (letters/digits, starts with a letter)",
        pattern=r"[A-Za-z][A-Za-z0-9]{0,29}",
    )
    base_url = r.url(
        "GRAPH_BASE_URL",
        "https://graph.microsoft.com/v1.0",
        "Graph endpoint incl. version; a loopback URL means the Graph simulator",
    )
    auth_mode = r.choice(
        "GRAPH_AUTH_MODE",
        "managed_identity",
        "how the app gets Graph tokens",
        ("client_secret", "certificate", "managed_identity", "static_token"),
    )
    tenant_id = r.text(
        "GRAPH_TENANT_ID", None, "Entra tenant id (client_secret/certificate)", pattern=r"[A-Za-z0-9.-]{1,100}"
    )
    client_id = r.text(
        "GRAPH_CLIENT_ID",
        None,
        "app (client) id; for managed_identity, a user-assigned identity's client id",
        pattern=r"[A-Za-z0-9-]{1,100}",
    )
    client_secret = r.secret("GRAPH_CLIENT_SECRET", "client secret (client_secret mode)")
    cert_path = r.text("GRAPH_CERTIFICATE_PATH", None, "PEM/PFX certificate file (certificate mode)")
    cert_password = r.secret("GRAPH_CERTIFICATE_PASSWORD", "certificate password, if any")
    static_token = r.secret("GRAPH_STATIC_TOKEN", "bearer token sent as is (static_token mode, simulator only)")
    graph_timeout = r.number("GRAPH_TIMEOUT_SECONDS", 10.0, "per-request timeout for Graph calls", low=0.5, high=120.0)
    probe_timeout = r.number(
        "HEALTH_PROBE_TIMEOUT_SECONDS", 2.0, "time limit of each storage probe in /api/health", low=0.1, high=30.0
    )
    log_level = r.choice("LOG_LEVEL", "INFO", "app log level", ("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format = r.choice("LOG_FORMAT", "text", "log line format", ("text", "json"))
    ai_connection = r.secret("APPLICATIONINSIGHTS_CONNECTION_STRING", "exports telemetry to Azure Monitor when set")
    l1_ttl = r.number(
        "CACHE_L1_TTL_SECONDS",
        1.0,
        "in-process cache lifetime (also the cross-instance invalidation lag)",
        low=0.0,
        high=60.0,
    )
    l1_entries = r.number("CACHE_L1_MAX_ENTRIES", 2048, "in-process cache size bound (entries)", low=1, high=1_000_000)
    user_ttl = r.number(
        "CACHE_USER_TTL_SECONDS",
        300.0,
        "users are fresh this long; served stale and refreshed up to 4x",
        low=1.0,
        high=86400.0,
    )
    messages_ttl = r.number(
        "CACHE_MESSAGES_TTL_SECONDS",
        60.0,
        "message pages are fresh this long; stale-and-refresh up to 4x",
        low=1.0,
        high=86400.0,
    )
    max_stale = r.number(
        "CACHE_MAX_STALE_SECONDS",
        3600.0,
        "oldest value served when Graph fails (stale-on-error)",
        low=1.0,
        high=7 * 86400.0,
    )
    negative_ttl = r.number(
        "CACHE_NEGATIVE_TTL_SECONDS", 30.0, "how long a Graph 404 is remembered", low=1.0, high=3600.0
    )
    retry_attempts = r.number(
        "RETRY_MAX_ATTEMPTS", 3, "Graph attempts per logical call (the SDK's own retry is off)", low=1, high=10
    )
    retry_budget = r.number(
        "RETRY_BUDGET_SECONDS", 20.0, "wall time one logical Graph call may spend retrying", low=0.1, high=300.0
    )
    retry_after_cap = r.number(
        "RETRY_MAX_RETRY_AFTER_SECONDS", 10.0, "longest Retry-After honoured by waiting", low=0.0, high=300.0
    )
    breaker_ratio = r.number(
        "BREAKER_FAILURE_RATIO", 0.5, "failure share in the window that opens the breaker", low=0.01, high=1.0
    )
    breaker_min_calls = r.number(
        "BREAKER_MIN_CALLS", 20, "calls in the window before the ratio applies", low=1, high=100_000
    )
    breaker_window = r.number(
        "BREAKER_WINDOW_SECONDS", 30.0, "sliding window of the failure ratio", low=1.0, high=3600.0
    )
    breaker_consecutive = r.number(
        "BREAKER_CONSECUTIVE_FAILURES", 5, "consecutive failures that open the breaker", low=1, high=1000
    )
    breaker_open = r.number(
        "BREAKER_OPEN_SECONDS", 10.0, "first open period (doubles per repeated trip)", low=0.1, high=3600.0
    )
    breaker_max_open = r.number(
        "BREAKER_MAX_OPEN_SECONDS", 300.0, "cap of the growing open period", low=0.1, high=86400.0
    )
    breaker_outage = r.choice(
        "BREAKER_STORAGE_OUTAGE",
        "fail_open",
        "breaker behaviour when Table Storage is unreachable",
        ("fail_open", "fail_closed"),
    )
    mailbox_concurrency = r.number(
        "GRAPH_MAILBOX_CONCURRENCY", 4, "concurrent Graph requests per mailbox per instance", low=1, high=64
    )
    webhook_max_body = r.number(
        "WEBHOOK_MAX_BODY_BYTES", 1_048_576, "largest notification POST accepted", low=1024, high=100 * 1024 * 1024
    )
    webhook_base = r.url(
        "WEBHOOK_BASE_URL", None, "public base URL Graph posts notifications to, e.g. https://<app>/api (https)"
    )
    desired = r.text("GRAPH_SUBSCRIPTIONS", "", "subscriptions to keep alive: resource=changeTypes; ... (docs)")
    ncrontab = r"\S+( \S+){5}"
    renewal_schedule = r.text(
        "SUBSCRIPTION_RENEWAL_SCHEDULE",
        "0 */30 * * * *",
        "NCRONTAB of the renewal/reconcile timer (also runs at start)",
        pattern=ncrontab,
    )
    renew_before = r.number(
        "SUBSCRIPTION_RENEW_BEFORE_HOURS", 48.0, "renew when less than this lifetime is left", low=1.0, high=600.0
    )
    maintenance_schedule = r.text(
        "MAINTENANCE_SCHEDULE", "0 */15 * * * *", "NCRONTAB of the cache and dedupe sweeper", pattern=ncrontab
    )
    forward_enrich = r.boolean("FORWARD_ENRICH", False, "add the changed resource (one Graph call) to forwarded events")

    base_url = base_url or ""
    if desired:
        from shared.subscriptions.desired import parse_desired

        try:
            parse_desired(desired, "GRAPH_SUBSCRIPTIONS")
        except ConfigurationError as error:
            r.errors.append(error.message)
        if webhook_base is None:
            r.errors.append("GRAPH_SUBSCRIPTIONS: needs WEBHOOK_BASE_URL (where Graph should post notifications)")
    if max_stale < 4 * max(user_ttl, messages_ttl):
        r.errors.append("CACHE_MAX_STALE_SECONDS: expected at least 4x the largest CACHE_*_TTL_SECONDS")
    if breaker_max_open < breaker_open:
        r.errors.append("BREAKER_MAX_OPEN_SECONDS: expected at least BREAKER_OPEN_SECONDS")
    if auth_mode == "client_secret" and not (tenant_id and client_id and client_secret):
        r.errors.append("GRAPH_AUTH_MODE=client_secret: needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET")
    if auth_mode == "certificate" and not (tenant_id and client_id and cert_path):
        r.errors.append("GRAPH_AUTH_MODE=certificate: needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CERTIFICATE_PATH")
    if auth_mode == "static_token":
        if static_token is None:
            r.errors.append("GRAPH_AUTH_MODE=static_token: needs GRAPH_STATIC_TOKEN")
        if base_url and not is_loopback_url(base_url):
            r.errors.append("GRAPH_AUTH_MODE=static_token: allowed only with a loopback GRAPH_BASE_URL (simulator)")

    settings = Settings(
        storage_connection_string=storage or Secret(""),
        storage_table_prefix=table_prefix or "graphfn",
        graph_base_url=base_url,
        graph_auth_mode=auth_mode,  # type: ignore[arg-type]  # checked by choice()
        graph_tenant_id=tenant_id,
        graph_client_id=client_id,
        graph_client_secret=client_secret,
        graph_certificate_path=cert_path,
        graph_certificate_password=cert_password,
        graph_static_token=static_token,
        graph_timeout_seconds=graph_timeout,
        health_probe_timeout_seconds=probe_timeout,
        log_level=log_level,
        log_format=log_format,  # type: ignore[arg-type]  # checked by choice()
        applicationinsights_connection_string=ai_connection,
        cache_l1_ttl_seconds=l1_ttl,
        cache_l1_max_entries=l1_entries,
        cache_user_ttl_seconds=user_ttl,
        cache_messages_ttl_seconds=messages_ttl,
        cache_max_stale_seconds=max_stale,
        cache_negative_ttl_seconds=negative_ttl,
        retry_max_attempts=retry_attempts,
        retry_budget_seconds=retry_budget,
        retry_max_retry_after_seconds=retry_after_cap,
        breaker_failure_ratio=breaker_ratio,
        breaker_min_calls=breaker_min_calls,
        breaker_window_seconds=breaker_window,
        breaker_consecutive_failures=breaker_consecutive,
        breaker_open_seconds=breaker_open,
        breaker_max_open_seconds=breaker_max_open,
        breaker_storage_outage=breaker_outage,  # type: ignore[arg-type]  # checked by choice()
        graph_mailbox_concurrency=mailbox_concurrency,
        webhook_max_body_bytes=webhook_max_body,
        forward_enrich=forward_enrich,
        webhook_base_url=webhook_base,
        graph_subscriptions=desired or "",
        subscription_renewal_schedule=renewal_schedule or "0 */30 * * * *",
        subscription_renew_before_hours=renew_before,
        maintenance_schedule=maintenance_schedule or "0 */15 * * * *",
    )
    return settings, r.errors, r.specs


def settings_table() -> str:
    """The README's settings table, generated from the reader so the two cannot drift."""
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for spec in Settings.specs():
        default = "(secret)" if spec.secret else (f"`{spec.default}`" if spec.default is not None else "—")
        rows.append(f"| `{spec.name}` | {default} | {spec.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(settings_table() + "\n")
