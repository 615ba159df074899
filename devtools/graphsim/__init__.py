"""A local Microsoft Graph v1.0 simulator for tests and development.

It speaks Graph's wire format (users, mail, delta, subscriptions with change
notifications, ``$batch``) closely enough that the real ``msgraph-sdk`` works against it
with only its base URL changed, and it exposes a control API under ``/_sim/`` to seed
data, inject faults, move the clock and observe traffic. See docs/graph-simulator.md.
"""

from devtools.graphsim.config import SimConfig

__all__ = ["SimConfig"]
