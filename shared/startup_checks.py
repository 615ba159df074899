"""Settings checks that need a feature's parser, run by the wiring when it first reads the settings.

``shared.settings`` imports no feature, so a rule like "GRAPH_SUBSCRIPTIONS parses" lives here and is passed
to ``Settings.from_env`` as a check: its problems join the reader's in the one ``ConfigurationError`` the
first invocation raises, so a bad value still fails every function at start, not the first renewal.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.errors import ConfigurationError
from shared.settings import Settings
from shared.subscriptions.desired import parse_desired


def desired_subscriptions_problems(settings: Settings) -> list[str]:
    """GRAPH_SUBSCRIPTIONS must parse (each bad entry named by position), as the subscription service will,
    ``@eventhub`` entries need the hub's namespace and tenant (the notification URL is built from them), and
    ``+data`` entries need rich notifications on (the certificate Graph encrypts with, the key to decrypt)."""
    try:
        desired = parse_desired(settings.graph_subscriptions, "GRAPH_SUBSCRIPTIONS")
    except ConfigurationError as error:
        return [error.message]
    problems = []
    if any(d.with_data for d in desired) and not settings.rich_notifications:
        problems.append("GRAPH_SUBSCRIPTIONS: +data entries need RICH_NOTIFICATIONS=true and its certificate")
    if not any(d.delivery == "eventhub" for d in desired):
        return problems
    if settings.eventhub_namespace is None:
        problems.append("GRAPH_SUBSCRIPTIONS: @eventhub entries need GRAPH_EVENTHUB__fullyQualifiedNamespace")
    if (settings.eventhub_tenant or settings.graph_tenant_id) is None:
        problems.append("GRAPH_SUBSCRIPTIONS: @eventhub entries need GRAPH_EVENTHUB_TENANT (or GRAPH_TENANT_ID)")
    return problems


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The app's settings with every start-up check applied; one error lists all problems."""
    return Settings.from_env(env, checks=(desired_subscriptions_problems,))
