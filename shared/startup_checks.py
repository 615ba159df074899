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
    """GRAPH_SUBSCRIPTIONS must parse (each bad entry named by position), as the subscription service will."""
    try:
        parse_desired(settings.graph_subscriptions, "GRAPH_SUBSCRIPTIONS")
    except ConfigurationError as error:
        return [error.message]
    return []


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The app's settings with every start-up check applied; one error lists all problems."""
    return Settings.from_env(env, checks=(desired_subscriptions_problems,))
