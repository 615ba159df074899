"""One frozen ``Settings`` object read from app settings (environment variables), validated once.

Each setting is declared once, below, as a field of ``Settings`` whose metadata holds its spec: environment
name, default, one-line meaning and parser (``shared.setting_specs``). From that one table come the reader,
the README's settings table and the sample files (``python -m devtools.settings_docs`` writes them). Reading
collects every problem before failing, so one ``ConfigurationError`` names each bad setting and what was
expected; secrets are wrapped in ``Secret`` and never appear in ``repr``, logs or errors. Checks that need a
feature's parser are passed in as ``checks`` by the wiring (``shared.startup_checks``): this module imports
no feature.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from shared.errors import ConfigurationError
from shared.secret import Secret
from shared.setting_rules import cross_field_problems
from shared.setting_specs import (
    RequestRate,
    SettingSpec,
    choice,
    flag,
    http_url,
    https_url,
    integer,
    is_loopback_url,
    number,
    read_fields,
    request_rate,
    secret,
    setting,
    specs_of,
    text,
)

GraphAuthMode = Literal["client_secret", "certificate", "managed_identity", "static_token"]
LogFormat = Literal["text", "json"]
StorageOutagePolicy = Literal["fail_open", "fail_closed"]

SettingsCheck = Callable[["Settings"], Iterable[str]]
"""A check run after reading; returns problems worded like the reader's (``NAME: what is wrong``)."""

_NCRONTAB = r"\S+( \S+){5}"
_AUTH_MODES = ("client_secret", "certificate", "managed_identity", "static_token")
_MI, _GUID, _TENANT = "managedidentity", text(r"[0-9a-fA-F-]{36}"), text(r"[A-Za-z0-9.-]{1,253}")
_HUB = text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_CERTIFICATE_ID = r"[\x21-\x7e]{1,128}"  # Graph's encryptionCertificateId: up to 128 characters (printable here)
# Entra's v1 configuration: its tokens' issuer is https://sts.windows.net/{tenantId}/, as Graph's validation tokens.
_ENTRA_OPENID = "https://login.microsoftonline.com/common/.well-known/openid-configuration"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the app reads from its environment. Build with ``Settings.from_env()``."""

    storage_connection_string: Secret | None = field(
        metadata=secret(
            "AzureWebJobsStorage",
            "Storage connection string (local runs); on Azure leave unset and use the identity settings below",
        )
    )
    storage_account_name: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__accountName",
            None,
            "identity-based storage: account name (endpoints https://<name>.<service>.core.windows.net)",
            text(r"[a-z0-9]{3,24}"),
        )
    )
    storage_blob_service_uri: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__blobServiceUri", None, "identity-based storage: blob endpoint (host)", https_url
        )
    )
    storage_queue_service_uri: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__queueServiceUri", None, "identity-based storage: queue endpoint", https_url
        )
    )
    storage_table_service_uri: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__tableServiceUri", None, "identity-based storage: table endpoint", https_url
        )
    )
    storage_credential: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__credential",
            None,
            "identity-based storage: `managedidentity`",
            choice("managedidentity"),
        )
    )
    storage_client_id: str | None = field(
        metadata=setting(
            "AzureWebJobsStorage__clientId",
            None,
            "user-assigned identity's client id for storage (unset: the system-assigned identity)",
            text(r"[A-Za-z0-9-]{1,100}"),
        )
    )
    storage_table_prefix: str = field(
        metadata=setting(
            "STORAGE_TABLE_PREFIX",
            "graphfn",
            "prefix of every table the app creates (letters/digits, starts with a letter)",
            text(r"[A-Za-z][A-Za-z0-9]{0,29}"),
        )
    )
    graph_base_url: str = field(
        metadata=setting(
            "GRAPH_BASE_URL",
            "https://graph.microsoft.com/v1.0",
            "Graph endpoint incl. version; a loopback URL means the Graph simulator",
            http_url,
        )
    )
    graph_auth_mode: GraphAuthMode = field(
        metadata=setting("GRAPH_AUTH_MODE", "managed_identity", "how the app gets Graph tokens", choice(*_AUTH_MODES))
    )
    graph_tenant_id: str | None = field(
        metadata=setting(
            "GRAPH_TENANT_ID", None, "Entra tenant id (client_secret/certificate)", text(r"[A-Za-z0-9.-]{1,100}")
        )
    )
    graph_client_id: str | None = field(
        metadata=setting(
            "GRAPH_CLIENT_ID",
            None,
            "app (client) id; for managed_identity, a user-assigned identity's client id",
            text(r"[A-Za-z0-9-]{1,100}"),
        )
    )
    graph_client_secret: Secret | None = field(
        metadata=secret("GRAPH_CLIENT_SECRET", "client secret (client_secret mode)")
    )
    graph_certificate_path: str | None = field(
        metadata=setting("GRAPH_CERTIFICATE_PATH", None, "PEM/PFX certificate file (certificate mode)")
    )
    graph_certificate_password: Secret | None = field(
        metadata=secret("GRAPH_CERTIFICATE_PASSWORD", "certificate password, if any")
    )
    graph_static_token: Secret | None = field(
        metadata=secret("GRAPH_STATIC_TOKEN", "bearer token sent as is (static_token mode, simulator only)")
    )
    graph_timeout_seconds: float = field(
        metadata=setting("GRAPH_TIMEOUT_SECONDS", 10.0, "per-request timeout for Graph calls", number(0.5, 120.0))
    )
    health_probe_timeout_seconds: float = field(
        metadata=setting(
            "HEALTH_PROBE_TIMEOUT_SECONDS", 2.0, "time limit of each storage probe in /api/health", number(0.1, 30.0)
        )
    )
    log_level: str = field(
        metadata=setting("LOG_LEVEL", "INFO", "app log level", choice("DEBUG", "INFO", "WARNING", "ERROR"))
    )
    log_format: LogFormat = field(metadata=setting("LOG_FORMAT", "text", "log line format", choice("text", "json")))
    applicationinsights_connection_string: Secret | None = field(
        default=None,
        metadata=secret("APPLICATIONINSIGHTS_CONNECTION_STRING", "exports telemetry to Azure Monitor when set"),
    )
    applicationinsights_authentication_string: str | None = field(
        metadata=setting(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            None,
            "Entra auth to Application Insights for host and app: `Authorization=AAD[;ClientId=<identity>]`",
            text(r"Authorization=AAD(;ClientId=[A-Za-z0-9-]{1,100})?|ClientId=[A-Za-z0-9-]{1,100};Authorization=AAD"),
        )
    )
    cache_l1_ttl_seconds: float = field(
        metadata=setting(
            "CACHE_L1_TTL_SECONDS",
            1.0,
            "in-process cache lifetime (also the cross-instance invalidation lag)",
            number(0.0, 60.0),
        )
    )
    cache_l1_max_entries: int = field(
        metadata=setting("CACHE_L1_MAX_ENTRIES", 2048, "in-process cache size bound (entries)", integer(1, 1_000_000))
    )
    cache_user_ttl_seconds: float = field(
        metadata=setting(
            "CACHE_USER_TTL_SECONDS",
            300.0,
            "users are fresh this long; served stale and refreshed up to 4x",
            number(1.0, 86400.0),
        )
    )
    cache_messages_ttl_seconds: float = field(
        metadata=setting(
            "CACHE_MESSAGES_TTL_SECONDS",
            60.0,
            "message pages are fresh this long; stale-and-refresh up to 4x",
            number(1.0, 86400.0),
        )
    )
    cache_max_stale_seconds: float = field(
        metadata=setting(
            "CACHE_MAX_STALE_SECONDS",
            3600.0,
            "oldest value served when Graph fails (stale-on-error)",
            number(1.0, 7 * 86400.0),
        )
    )
    cache_negative_ttl_seconds: float = field(
        metadata=setting("CACHE_NEGATIVE_TTL_SECONDS", 30.0, "how long a Graph 404 is remembered", number(1.0, 3600.0))
    )
    retry_max_attempts: int = field(
        metadata=setting(
            "RETRY_MAX_ATTEMPTS", 3, "Graph attempts per logical call (the SDK's own retry is off)", integer(1, 10)
        )
    )
    retry_budget_seconds: float = field(
        metadata=setting(
            "RETRY_BUDGET_SECONDS", 20.0, "wall time one logical Graph call may spend retrying", number(0.1, 300.0)
        )
    )
    retry_max_retry_after_seconds: float = field(
        metadata=setting(
            "RETRY_MAX_RETRY_AFTER_SECONDS", 10.0, "longest Retry-After honoured by waiting", number(0.0, 300.0)
        )
    )
    breaker_failure_ratio: float = field(
        metadata=setting(
            "BREAKER_FAILURE_RATIO", 0.5, "failure share in the window that opens the breaker", number(0.01, 1.0)
        )
    )
    breaker_min_calls: int = field(
        metadata=setting("BREAKER_MIN_CALLS", 20, "calls in the window before the ratio applies", integer(1, 100_000))
    )
    breaker_window_seconds: float = field(
        metadata=setting("BREAKER_WINDOW_SECONDS", 30.0, "sliding window of the failure ratio", number(1.0, 3600.0))
    )
    breaker_consecutive_failures: int = field(
        metadata=setting(
            "BREAKER_CONSECUTIVE_FAILURES", 5, "consecutive failures that open the breaker", integer(1, 1000)
        )
    )
    breaker_open_seconds: float = field(
        metadata=setting(
            "BREAKER_OPEN_SECONDS", 10.0, "first open period (doubles per repeated trip)", number(0.1, 3600.0)
        )
    )
    breaker_max_open_seconds: float = field(
        metadata=setting("BREAKER_MAX_OPEN_SECONDS", 300.0, "cap of the growing open period", number(0.1, 86400.0))
    )
    breaker_storage_outage: StorageOutagePolicy = field(
        metadata=setting(
            "BREAKER_STORAGE_OUTAGE",
            "fail_open",
            "breaker behaviour when Table Storage is unreachable",
            choice("fail_open", "fail_closed"),
        )
    )
    graph_mailbox_concurrency: int = field(
        metadata=setting(
            "GRAPH_MAILBOX_CONCURRENCY", 4, "concurrent Graph requests per mailbox per instance", integer(1, 64)
        )
    )
    webhook_max_body_bytes: int = field(
        metadata=setting(
            "WEBHOOK_MAX_BODY_BYTES", 1_048_576, "largest notification POST accepted", integer(1024, 100 * 1024 * 1024)
        )
    )
    webhook_flush_interval_ms: float = field(
        metadata=setting(
            "WEBHOOK_FLUSH_INTERVAL_MS",
            100.0,
            "least time between two writes of the webhook to graph-notifications: under load the POSTs of "
            "that time share queue messages (fewer Storage calls downstream); 0 writes each POST at once",
            number(0.0, 1000.0),
        )
    )
    background_target_lag_ms: float = field(
        metadata=setting(
            "BACKGROUND_TARGET_LAG_MS",
            20.0,
            "event-loop lag above which queue processing yields to webhook acknowledgements",
            number(1.0, 1000.0),
        )
    )
    background_target_ack_ms: float = field(
        metadata=setting(
            "BACKGROUND_TARGET_ACK_MS",
            100.0,
            "webhook accept time (validate + persist) above which queue processing yields",
            number(10.0, 2000.0),
        )
    )
    background_target_delay_ms: float = field(
        metadata=setting(
            "BACKGROUND_TARGET_DELAY_MS",
            1000.0,
            "receipt-to-processing delay above which acknowledgements may slow (up to 2.5x their targets) "
            "so that processing catches up",
            number(100.0, 60_000.0),
        )
    )
    webhook_base_url: str | None = field(
        metadata=setting(
            "WEBHOOK_BASE_URL",
            None,
            "public base URL Graph posts notifications to, e.g. https://<app>/api (https)",
            http_url,
        )
    )
    graph_subscriptions: str = field(
        metadata=setting("GRAPH_SUBSCRIPTIONS", "", "subscriptions to keep alive: resource=changeTypes; ... (docs)")
    )
    # The Event Hubs delivery path (docs/eventhubs.md): the trigger's identity-based connection GRAPH_EVENTHUB.
    eventhub_namespace: str | None = field(
        metadata=setting(
            "GRAPH_EVENTHUB__fullyQualifiedNamespace",
            None,
            "Event Hubs namespace host (<ns>.servicebus.windows.net) of the hub trigger and `@eventhub` entries",
            text(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63}){1,8}"),
        )
    )
    eventhub_credential: str | None = field(
        metadata=setting("GRAPH_EVENTHUB__credential", None, "hub connection: `managedidentity`", choice(_MI))
    )
    eventhub_client_id: str | None = field(
        metadata=setting("GRAPH_EVENTHUB__clientId", None, "hub connection: user-assigned identity's client id", _GUID)
    )
    eventhub_name: str = field(
        metadata=setting("GRAPH_EVENTHUB_NAME", "graph-notifications", "event hub name (read at indexing)", _HUB)
    )
    eventhub_tenant: str | None = field(
        metadata=setting("GRAPH_EVENTHUB_TENANT", None, "tenantId of hub URLs (unset: GRAPH_TENANT_ID)", _TENANT)
    )
    subscription_renewal_schedule: str = field(
        metadata=setting(
            "SUBSCRIPTION_RENEWAL_SCHEDULE",
            "0 */30 * * * *",
            "NCRONTAB of the renewal/reconcile timer (also runs at start)",
            text(_NCRONTAB),
        )
    )
    subscription_renew_before_hours: float = field(
        metadata=setting(
            "SUBSCRIPTION_RENEW_BEFORE_HOURS", 48.0, "renew when less than this lifetime is left", number(1.0, 600.0)
        )
    )
    maintenance_schedule: str = field(
        metadata=setting(
            "MAINTENANCE_SCHEDULE",
            "0 */15 * * * *",
            "NCRONTAB of the sweeper (cache, dedupe, mirror tombstones)",
            text(_NCRONTAB),
        )
    )
    timer_startup_delay_seconds: float = field(
        metadata=setting(
            "TIMER_STARTUP_DELAY_SECONDS",
            3.0,
            "timers due in a process's first seconds wait this long after start, so a cold start's first "
            "requests do not queue behind them",
            number(0.0, 300.0),
        )
    )
    forward_enrich: bool = field(
        metadata=setting("FORWARD_ENRICH", False, "add the changed resource (one Graph call) to forwarded events", flag)
    )
    forward_events_per_message: int = field(
        metadata=setting(
            "FORWARD_EVENTS_PER_MESSAGE",
            100,
            "events per graph-events message: 1 = one bare event each, more = the v2 envelope",
            integer(1, 1000),
        )
    )
    graph_rate_limit: RequestRate = field(
        metadata=setting(
            "GRAPH_RATE_LIMIT",
            "600/10",
            "request budget of delta rounds (mirror and mail catch-up): requests/seconds (docs/mirror.md)",
            request_rate,
        )
    )
    mirror_debounce_seconds: float = field(
        metadata=setting(
            "MIRROR_DEBOUNCE_SECONDS", 2.0, "a users notification's round waits this long for more", number(0.0, 60.0)
        )
    )
    mirror_safety_interval_seconds: float = field(
        metadata=setting(
            "MIRROR_SAFETY_INTERVAL_SECONDS",
            300.0,
            "longest time without a mirror round before the timer runs one",
            number(10.0, 86_400.0),
        )
    )
    mirror_max_staleness_seconds: float = field(
        metadata=setting(
            "MIRROR_MAX_STALENESS_SECONDS",
            600.0,
            "the API serves users from the mirror while its last round is younger than this",
            number(10.0, 86_400.0),
        )
    )
    mirror_schedule: str = field(
        metadata=setting("MIRROR_SCHEDULE", "0 * * * * *", "NCRONTAB of the mirror's safety-net check", text(_NCRONTAB))
    )
    rich_notifications: bool = field(
        metadata=setting(
            "RICH_NOTIFICATIONS",
            False,
            "verify validation tokens and decrypt resource data of rich notifications (docs/rich-notifications.md)",
            flag,
        )
    )
    rich_notifications_cache: bool = field(
        metadata=setting(
            "RICH_NOTIFICATIONS_CACHE",
            True,
            "cache the message a rich notification brings (a Table insert per created message, a read and a "
            "conditional write per update); off: only invalidate",
            flag,
        )
    )
    rich_certificate: Secret | None = field(
        metadata=secret(
            "RICH_NOTIFICATIONS_CERTIFICATE",
            "PEM of the RSA private key + certificate that decrypts resource data (on Azure a Key Vault reference)",
        )
    )
    rich_certificate_id: str | None = field(
        metadata=setting(
            "RICH_NOTIFICATIONS_CERTIFICATE_ID",
            None,
            "that certificate's encryptionCertificateId",
            text(_CERTIFICATE_ID),
        )
    )
    rich_previous_certificate: Secret | None = field(
        metadata=secret(
            "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE",
            "the certificate before a rotation: still decrypts items that name it",
        )
    )
    rich_previous_certificate_id: str | None = field(
        metadata=setting(
            "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE_ID",
            None,
            "the previous certificate's encryptionCertificateId",
            text(_CERTIFICATE_ID),
        )
    )
    rich_audience: str | None = field(
        metadata=setting(
            "RICH_NOTIFICATIONS_AUDIENCE",
            None,
            "app id validation tokens must be issued for (unset: GRAPH_CLIENT_ID)",
            text(r"[A-Za-z0-9-]{1,100}"),
        )
    )
    rich_openid_configuration: str = field(
        metadata=setting(
            "RICH_NOTIFICATIONS_OPENID_CONFIGURATION",
            _ENTRA_OPENID,
            "OpenID configuration whose jwks_uri holds the validation tokens' signing keys",
            http_url,
        )
    )

    @property
    def storage_identity(self) -> bool:
        """True when storage is reached with a managed identity (the ``AzureWebJobsStorage__*`` shapes)."""
        return self.storage_connection_string is None

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
    def from_env(cls, env: Mapping[str, str] | None = None, checks: Iterable[SettingsCheck] = ()) -> Settings:
        """Read and validate; raise one ``ConfigurationError`` listing every problem, ``checks``' included."""
        settings, problems = read_fields(cls, os.environ if env is None else env)
        problems += cross_field_problems(settings)
        for check in checks:
            problems += check(settings)
        if problems:
            raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(problems))
        return settings

    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Every setting the app reads, in order, with default and description."""
        return specs_of(cls)
