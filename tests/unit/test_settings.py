"""Settings: read once, validated as a whole, secrets never shown."""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from devtools.settings_docs import settings_table
from shared import wiring
from shared.errors import ConfigurationError
from shared.secret import Secret
from shared.settings import Settings
from shared.startup_checks import read_settings

ROOT = Path(__file__).resolve().parents[2]
BICEP_APP = ROOT / "infra" / "modules" / "functionapp.bicep"
# On Azure the storage connection is identity-based: the host's AzureWebJobsStorage__* shape replaces the
# connection string, so any setting named AzureWebJobsStorage* is checked against this set instead.
STORAGE_IDENTITY_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
}
# Read by the Functions host, not declared in shared/settings.py (Entra ingestion to Application Insights).
HOST_ONLY_SETTINGS = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
# Values the Bicep computes; the test substitutes a realistic production value for each to validate the whole.
BICEP_EXPRESSION_SAMPLES = {
    "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "GRAPH_AUTH_MODE": "managed_identity",
    "GRAPH_TENANT_ID": "0f0e0d0c-0b0a-4909-8807-060504030201",
    "GRAPH_CLIENT_ID": "01234567-89ab-4cde-8f01-23456789abcd",
    "GRAPH_CLIENT_SECRET": "",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-4000-8000-000000000000",
    "WEBHOOK_BASE_URL": "https://func-graphfn-abc.azurewebsites.net/api",
    "GRAPH_SUBSCRIPTIONS": "users=updated,deleted",
    "GRAPH_EVENTHUB__fullyQualifiedNamespace": "evhns-graphfn-abc.servicebus.windows.net",
    "GRAPH_EVENTHUB__clientId": "01234567-89ab-4cde-8f01-23456789abcd",
    "GRAPH_EVENTHUB_TENANT": "",
    "RICH_NOTIFICATIONS": "false",  # enableRichNotifications defaults to false
    "RICH_NOTIFICATIONS_CERTIFICATE": "",
    "RICH_NOTIFICATIONS_CERTIFICATE_ID": "",
    "AzureWebJobsStorage__clientId": "89abcdef-0123-4567-89ab-cdef01234567",
    "AzureWebJobsStorage__blobServiceUri": "https://stx.blob.core.windows.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://stx.queue.core.windows.net/",
    "AzureWebJobsStorage__tableServiceUri": "https://stx.table.core.windows.net/",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=89abcdef-0123-4567-89ab-cdef01234567;Authorization=AAD",
}
SECRET_VALUE = "s3cr3t-value-that-must-not-leak"
VALID = {
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=" + SECRET_VALUE,
    "GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0",
    "GRAPH_AUTH_MODE": "static_token",
    "GRAPH_STATIC_TOKEN": SECRET_VALUE,
}


def _error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        read_settings(env)
    return str(caught.value)


def _is_of_type(value: object, annotation: object) -> bool:
    """Enough of isinstance for the annotations Settings uses: classes, ``X | None`` and ``Literal``."""
    if typing.get_origin(annotation) is typing.Literal:
        return value in typing.get_args(annotation)
    if isinstance(annotation, types.UnionType):
        return any(_is_of_type(value, member) for member in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    return isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))  # type: ignore[arg-type]


def test_valid_environment_gives_typed_values() -> None:
    """A complete environment reads into typed fields with defaults applied."""
    settings = Settings.from_env({**VALID, "GRAPH_TIMEOUT_SECONDS": "2.5"})
    assert settings.graph_timeout_seconds == 2.5
    assert settings.storage_table_prefix == "graphfn"
    assert settings.graph_mode == "simulator"
    assert settings.graph_scope == "http://127.0.0.1:8070/.default"


def test_missing_required_setting_is_named() -> None:
    """A missing storage connection string fails with its name and purpose."""
    message = _error({k: v for k, v in VALID.items() if k != "AzureWebJobsStorage"})
    assert "AzureWebJobsStorage: required" in message


IDENTITY = {k: v for k, v in VALID.items() if k != "AzureWebJobsStorage"}


def test_identity_based_storage_uses_the_hosts_setting_shapes() -> None:
    """An account name alone (system-assigned identity) or the three service URIs with a client id are
    complete; the app's clients then go to the account's endpoints, or to the URIs given."""
    from shared.storage_clients import service_url

    by_name = Settings.from_env({**IDENTITY, "AzureWebJobsStorage__accountName": "acct01"})
    assert by_name.storage_identity
    assert by_name.storage_client_id is None
    assert service_url(by_name, "table") == "https://acct01.table.core.windows.net"
    assert service_url(by_name, "queue") == "https://acct01.queue.core.windows.net"
    uris = {
        f"AzureWebJobsStorage__{kind}ServiceUri": f"https://127.0.0.1:1000{i}/devstoreaccount1/"
        for i, kind in enumerate(("blob", "queue", "table"))
    }
    extra = {"AzureWebJobsStorage__credential": "managedidentity", "AzureWebJobsStorage__clientId": "c-1"}
    by_uri = Settings.from_env({**IDENTITY, **uris, **extra})
    assert by_uri.storage_client_id == "c-1"
    assert service_url(by_uri, "table") == "https://127.0.0.1:10002/devstoreaccount1"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "AzureWebJobsStorage: required (a Storage connection string), or AzureWebJobsStorage__accountName"),
        ({"AzureWebJobsStorage__clientId": "c-1"}, "AzureWebJobsStorage__accountName: required"),
        ({"AzureWebJobsStorage__queueServiceUri": "https://q.example"}, "__queueServiceUri and __tableServiceUri"),
        (
            {"AzureWebJobsStorage__accountName": "acct01", "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
            "not both",
        ),
        ({"AzureWebJobsStorage__accountName": "Bad_Name"}, "AzureWebJobsStorage__accountName: expected"),
        ({"AzureWebJobsStorage__accountName": "acct01", "AzureWebJobsStorage__credential": "key"}, "__credential"),
        ({"AzureWebJobsStorage__tableServiceUri": "http://acct.table.core.windows.net"}, "expected https"),
        ({"AzureWebJobsStorage__tableServiceUri": "http://127.0.0.1:10002/a"}, "expected an https URL"),
    ],
)
def test_storage_settings_that_would_mislead_are_refused(extra: dict[str, str], expected: str) -> None:
    """No storage at all, half an identity configuration, both shapes at once, a malformed account name, another
    credential kind and plain-http endpoints (bearer tokens need TLS) each fail at start, naming what to set."""
    assert expected in _error({**IDENTITY, **extra})


def test_all_problems_are_reported_at_once() -> None:
    """Several bad settings produce one error that lists each of them with what was expected."""
    message = _error({**VALID, "GRAPH_TIMEOUT_SECONDS": "abc", "LOG_LEVEL": "LOUD", "STORAGE_TABLE_PREFIX": "9x/"})
    assert "GRAPH_TIMEOUT_SECONDS: expected a number from 0.5 to 120.0, got 'abc'" in message
    assert "LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'" in message
    assert "STORAGE_TABLE_PREFIX: expected a value matching" in message


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e309", "0x10", " ", "10" * 40_000])
def test_hostile_numbers_are_rejected_or_defaulted(value: str) -> None:
    """NaN, infinity, out-of-range and oversized values never become a setting."""
    if not value.strip():
        assert Settings.from_env({**VALID, "GRAPH_TIMEOUT_SECONDS": value}).graph_timeout_seconds == 10.0
        return
    assert "GRAPH_TIMEOUT_SECONDS" in _error({**VALID, "GRAPH_TIMEOUT_SECONDS": value})


def test_secrets_never_appear_in_repr_or_errors() -> None:
    """Neither the settings' repr nor a configuration error shows a secret value."""
    settings = Settings.from_env(VALID)
    assert SECRET_VALUE not in repr(settings)
    assert repr(Secret("x")) == "Secret('**********')"
    assert settings.storage_connection_string is not None
    assert settings.storage_connection_string.reveal().endswith(SECRET_VALUE)
    message = _error({**VALID, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"})
    assert SECRET_VALUE not in message


def test_static_token_is_refused_for_real_graph() -> None:
    """A static bearer token may only be sent to a loopback simulator, never to a real Graph endpoint."""
    message = _error({**VALID, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"})
    assert "static_token: allowed only with a loopback GRAPH_BASE_URL" in message


@pytest.mark.parametrize(
    "url",
    ["http://graph.microsoft.com/v1.0", "ftp://127.0.0.1/v1.0", "not a url", "http://10.0.0.1/v1.0", "http://[::1"],
)
def test_graph_url_must_be_https_unless_loopback(url: str) -> None:
    """Plain http is refused except on loopback; non-http schemes are refused."""
    assert "GRAPH_BASE_URL: expected" in _error({**VALID, "GRAPH_BASE_URL": url})


def test_credential_modes_require_their_settings() -> None:
    """client_secret and certificate modes name the settings they still need."""
    base = {**VALID, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"}
    assert "needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET" in _error(
        {**base, "GRAPH_AUTH_MODE": "client_secret"}
    )
    assert "needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CERTIFICATE_PATH" in _error(
        {**base, "GRAPH_AUTH_MODE": "certificate"}
    )
    settings = Settings.from_env({**base, "GRAPH_AUTH_MODE": "managed_identity"})
    assert settings.graph_mode == "real"
    assert settings.graph_scope == "https://graph.microsoft.com/.default"


def test_every_setting_is_in_the_sample_file_and_the_readme() -> None:
    """local.settings.sample.json lists every setting and the README carries the generated table."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    missing = [spec.name for spec in Settings.specs() if spec.name not in sample]
    assert missing == []
    assert settings_table() in (ROOT / "README.md").read_text()


def test_sample_settings_are_valid() -> None:
    """The sample file's values pass validation as they are."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert Settings.from_env(sample).graph_mode == "simulator"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("users=updated;bogus=created", "GRAPH_SUBSCRIPTIONS"),
        ("users=exploded", "GRAPH_SUBSCRIPTIONS"),
        ("users/../../x/messages=created", "GRAPH_SUBSCRIPTIONS"),
        ("users=created;" * 3000, "GRAPH_SUBSCRIPTIONS"),
    ],
)
def test_malformed_desired_subscriptions_fail_at_start(value: str, expected: str) -> None:
    """A malformed desired-state setting is a configuration error naming the setting, not a runtime surprise."""
    message = _error({**VALID, "GRAPH_SUBSCRIPTIONS": value, "WEBHOOK_BASE_URL": "http://127.0.0.1:7071/api"})
    assert expected in message


def test_feature_checks_run_in_the_wiring_and_join_the_readers_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings alone keeps GRAPH_SUBSCRIPTIONS raw (it imports no feature); the wiring's settings service
    parses it at first read, and its problem is reported in the same error as the reader's own."""
    env = {**VALID, "GRAPH_SUBSCRIPTIONS": "users=exploded", "WEBHOOK_BASE_URL": "http://127.0.0.1:7071/api"}
    assert Settings.from_env(env).graph_subscriptions == "users=exploded"
    message = _error({**env, "LOG_LEVEL": "LOUD"})
    assert "Invalid GRAPH_SUBSCRIPTIONS" in message
    assert "LOG_LEVEL: expected one of" in message
    for spec in Settings.specs():
        monkeypatch.delenv(spec.name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="GRAPH_SUBSCRIPTIONS"):
        wiring.SETTINGS.factory()


def test_each_setting_is_declared_once_with_a_type_its_parser_gives() -> None:
    """Every Settings field carries one spec with a distinct name, and every parsed value (defaults and the
    sample file's values) has the field's declared type."""
    names = [spec.name for spec in Settings.specs()]
    assert len(names) == len(set(names)) == len(fields(Settings))
    hints = typing.get_type_hints(Settings)
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    for settings in (Settings.from_env(VALID), Settings.from_env(sample)):
        wrong = [f.name for f in fields(Settings) if not _is_of_type(getattr(settings, f.name), hints[f.name])]
        assert wrong == []


def test_desired_subscriptions_need_a_webhook_url() -> None:
    """Subscriptions without a public webhook URL cannot be created: said at start."""
    assert "needs WEBHOOK_BASE_URL" in _error({**VALID, "GRAPH_SUBSCRIPTIONS": "users=updated"})


@pytest.mark.parametrize("schedule", ["every minute", "* * * * *", "0 */5 * * * * *x y"])
def test_schedules_must_be_six_field_ncrontab(schedule: str) -> None:
    """Timer schedules are NCRONTAB with seconds first (six fields)."""
    assert "SUBSCRIPTION_RENEWAL_SCHEDULE" in _error({**VALID, "SUBSCRIPTION_RENEWAL_SCHEDULE": schedule})


REAL_AUTH = {
    "AzureWebJobsStorage__accountName": "acct01",
    "GRAPH_AUTH_MODE": "managed_identity",
    "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
}


@pytest.mark.parametrize("mode", ["managed_identity", "client_secret", "certificate"])
def test_real_credentials_with_the_simulators_graph_url_are_refused(mode: str) -> None:
    """Real tokens for a loopback Graph would be scoped to 127.0.0.1: start fails saying what to set."""
    ids = {"GRAPH_TENANT_ID": "contoso.onmicrosoft.com", "GRAPH_CLIENT_ID": "c-1", "GRAPH_CLIENT_SECRET": "s"}
    env = {**REAL_AUTH, **ids, "GRAPH_CERTIFICATE_PATH": "/x.pem", "GRAPH_AUTH_MODE": mode}
    message = _error({**env, "GRAPH_BASE_URL": "http://127.0.0.1:8070/v1.0"})
    assert (
        f"GRAPH_BASE_URL: http://127.0.0.1:8070/v1.0 is loopback (the Graph simulator) but GRAPH_AUTH_MODE={mode}"
        in (message)
    )
    assert "set GRAPH_BASE_URL=https://graph.microsoft.com/v1.0" in message
    assert Settings.from_env(env).graph_mode == "real"


@pytest.mark.parametrize("webhook", ["http://127.0.0.1:7071/api", "http://localhost:7071/api", "https://[::1]/api"])
def test_real_credentials_with_a_loopback_webhook_are_refused(webhook: str) -> None:
    """Graph cannot post to this machine's loopback address: refused with real credentials, allowed with the
    simulator (which runs on the same machine)."""
    message = _error({**REAL_AUTH, "WEBHOOK_BASE_URL": webhook})
    assert "WEBHOOK_BASE_URL: " in message
    assert "set the app's public https URL" in message
    assert Settings.from_env({**VALID, "WEBHOOK_BASE_URL": webhook}).webhook_base_url == webhook.rstrip("/")
    public = Settings.from_env({**REAL_AUTH, "WEBHOOK_BASE_URL": "https://app.azurewebsites.net/api"})
    assert public.webhook_base_url == "https://app.azurewebsites.net/api"


def test_timer_schedules_have_defaults_without_their_settings() -> None:
    """A timer's schedule is its setting when set (stripped), else the declared default; never absent."""
    from shared.index_time import timer_schedule

    assert timer_schedule("SUBSCRIPTION_RENEWAL_SCHEDULE", {}) == "0 */30 * * * *"
    assert timer_schedule("MAINTENANCE_SCHEDULE", {"MAINTENANCE_SCHEDULE": "  "}) == "0 */15 * * * *"
    assert timer_schedule("MAINTENANCE_SCHEDULE", {"MAINTENANCE_SCHEDULE": " 0 0 * * * * "}) == "0 0 * * * *"
    with pytest.raises(ValueError, match="no default schedule"):
        timer_schedule("WEBHOOK_BASE_URL", {})


def test_real_tenant_sample_is_the_sample_for_a_real_tenant_and_validates() -> None:
    """local.settings.real-tenant.sample.json is generated from the sample (every setting in it) and, once its
    client secret is filled in, reads as real Graph; left as the simulator sample's loopback URLs it would not."""
    from devtools.settings_docs import real_tenant_sample

    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    text = (ROOT / "local.settings.real-tenant.sample.json").read_text()
    assert text == real_tenant_sample(sample), "run python -m devtools.settings_docs"
    values = json.loads(text)["Values"]
    assert "needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET" in _error(values)  # as shipped: no secret
    settings = read_settings({**values, "GRAPH_CLIENT_SECRET": "filled-in"})
    assert settings.graph_mode == "real"
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    loopback = {
        "GRAPH_BASE_URL": sample["Values"]["GRAPH_BASE_URL"],
        "WEBHOOK_BASE_URL": sample["Values"]["WEBHOOK_BASE_URL"],
    }
    message = _error({**values, "GRAPH_CLIENT_SECRET": "filled-in", **loopback})
    assert "GRAPH_BASE_URL: http://127.0.0.1:8070/v1.0 is loopback" in message
    assert "WEBHOOK_BASE_URL: http://127.0.0.1:7071/api is loopback" in message


def _bicep_app_settings(text: str | None = None) -> dict[str, str]:
    """The app settings block of the Bicep: name -> value as written (a quoted literal, or an expression)."""
    text = BICEP_APP.read_text() if text is None else text
    block = text.split("// app-settings:begin", 1)[1].split("// app-settings:end", 1)[0]
    body = block.split("properties: {", 1)[1]
    found: dict[str, str] = {}
    for line in body.splitlines():
        match = re.match(r"\s+([A-Za-z_][A-Za-z0-9_]*): (.+?)(\s+//[^']*)?$", line)
        if match:
            assert match[1] not in found, f"{match[1]} is set twice in {BICEP_APP.name}"
            found[match[1]] = match[2]
    return found


def _literal(value: str) -> str | None:
    """The string of a plain Bicep literal ('text' without interpolation), else None."""
    if re.fullmatch(r"'[^'$]*'", value):
        return value[1:-1]
    return None


def test_bicep_sets_exactly_the_settings_the_app_and_host_read() -> None:
    """The infra's app settings are the app's settings (README table and sample file are checked above against
    the same specs), with the identity-based storage shape instead of a connection string, plus the host's
    Entra ingestion setting; nothing missing, nothing unknown."""
    bicep = set(_bicep_app_settings())
    assert _drift(bicep) == (set(), set())
    assert "AzureWebJobsStorage" not in bicep  # no account key on Azure: shared keys are disabled
    assert not bicep & {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"}  # Flex: functionAppConfig


def test_bicep_literals_are_the_declared_defaults_and_the_whole_set_validates() -> None:
    """Each literal value parses to the same value as the setting's declared default (so a changed default
    cannot silently differ in production), every computed value has a realistic sample here, and the
    resulting production environment passes the app's own validation (feature checks included)."""
    values = _bicep_app_settings()
    specs = {spec.name: spec for spec in Settings.specs()}
    env: dict[str, str] = {}
    for name, written in values.items():
        literal = _literal(written)
        if literal is None:
            assert name in BICEP_EXPRESSION_SAMPLES or name in STORAGE_IDENTITY_SETTINGS | HOST_ONLY_SETTINGS, name
            env[name] = BICEP_EXPRESSION_SAMPLES.get(name, "https://stx.queue.core.windows.net/")
            continue
        env[name] = literal
        spec = specs.get(name)
        if spec is not None and spec.default is not None and literal:
            assert spec.parse(literal) == spec.parse(spec.default), name
    storage = specs.get("AzureWebJobsStorage")
    if storage is not None and storage.required:  # until the app reads the identity-based shape itself
        env["AzureWebJobsStorage"] = VALID["AzureWebJobsStorage"]
    settings = read_settings(env)
    assert settings.graph_mode == "real"
    assert settings.webhook_base_url == BICEP_EXPRESSION_SAMPLES["WEBHOOK_BASE_URL"]


def _drift(bicep: set[str]) -> tuple[set[str], set[str]]:
    """(missing from the Bicep, unknown to the app and host) for a set of Bicep app setting names."""
    declared = {spec.name for spec in Settings.specs() if not spec.name.startswith("AzureWebJobsStorage")}
    expected = declared | HOST_ONLY_SETTINGS | STORAGE_IDENTITY_SETTINGS
    return expected - bicep, bicep - expected


def test_bicep_drift_is_seen() -> None:
    """The drift test can fail: a setting dropped from the Bicep or one the app does not read is reported,
    and values keep their comments out (a URL's // is not a comment)."""
    text = BICEP_APP.read_text()
    mutated = text.replace("    LOG_LEVEL: 'INFO'\n", "    BOGUS_SETTING: 'x' // unknown\n")
    assert mutated != text
    assert _drift(set(_bicep_app_settings(mutated))) == ({"LOG_LEVEL"}, {"BOGUS_SETTING"})
    values = _bicep_app_settings()
    assert values["WEBHOOK_BASE_URL"] == "'https://${site.properties.defaultHostName}/api'"
    assert values["GRAPH_STATIC_TOKEN"] == "''"
    assert _literal(values["WEBHOOK_BASE_URL"]) is None


def test_rich_notifications_need_a_certificate_and_an_audience() -> None:
    """On, they need the decrypting certificate with its id and an app id for the tokens; the previous
    certificate comes with its id or not at all; the PEM never shows in the error."""
    message = _error({**VALID, "RICH_NOTIFICATIONS": "true"})
    assert "RICH_NOTIFICATIONS_CERTIFICATE and RICH_NOTIFICATIONS_CERTIFICATE_ID" in message
    assert "RICH_NOTIFICATIONS_AUDIENCE or GRAPH_CLIENT_ID" in message
    pem = "-----BEGIN PRIVATE KEY-----" + SECRET_VALUE
    message = _error({**VALID, "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE": pem})
    assert "together with RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE_ID" in message
    assert SECRET_VALUE not in message
    on = {
        **VALID,
        "RICH_NOTIFICATIONS": "true",
        "RICH_NOTIFICATIONS_CERTIFICATE": pem,
        "RICH_NOTIFICATIONS_CERTIFICATE_ID": "cert-2026",
        "RICH_NOTIFICATIONS_AUDIENCE": "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    }
    current = read_settings(on)
    assert (current.rich_notifications, current.rich_certificate_id) == (True, "cert-2026")
    assert read_settings(VALID).rich_notifications is False
