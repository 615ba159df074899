"""Values a trigger decorator needs when the app is indexed (schedules, the event hub's name).

Read from the app settings at indexing, with the declared default when unset, so a trigger never depends on a
``%SETTING%`` expression, which fails indexing on Azure when the setting is absent; a set value still goes
through the reader's check at the first invocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.settings import Settings


def index_time_value(name: str, env: Mapping[str, str] | None = None) -> str:
    """The app setting ``name`` if set, else its declared default (``ValueError`` if it has none)."""
    value = (os.environ if env is None else env).get(name, "").strip()
    if value:
        return value
    (spec,) = [spec for spec in Settings.specs() if spec.name == name]
    if spec.default is None:
        raise ValueError(f"{name} has no default")
    return spec.default


def timer_schedule(name: str, env: Mapping[str, str] | None = None) -> str:
    """A timer's NCRONTAB for its trigger decorator (see the module docstring)."""
    try:
        return index_time_value(name, env)
    except ValueError:
        raise ValueError(f"{name} has no default schedule") from None
