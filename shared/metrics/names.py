"""The names of the app's metrics and the few fixed attribute values dashboards group by.

Kept apart from the recording code so tests, exporters' queries and docs read one spelling.
"""

from __future__ import annotations

PREFIX = "graphapp."
GRAPH_CALLS = PREFIX + "graph.calls"
GRAPH_CALL_DURATION = PREFIX + "graph.call.duration"
GRAPH_RETRIES = PREFIX + "graph.retries"
BREAKER_TRANSITIONS = PREFIX + "breaker.transitions"
BREAKER_STATE = PREFIX + "breaker.state"
CACHE_REQUESTS = PREFIX + "cache.requests"
WEBHOOK_ACK_DURATION = PREFIX + "webhook.ack.duration"
NOTIFICATIONS = PREFIX + "notifications"
NOTIFICATION_PROCESS_DURATION = PREFIX + "notifications.process.duration"
EVENT_LOOP_LAG = PREFIX + "event_loop.lag"
SUBSCRIPTION_EXPIRES_IN = PREFIX + "subscription.expires_in"

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2, "isolated": 3}
CACHE_RESULTS = ("hit-l1", "hit-l2", "stale", "miss", "negative-hit", "failure")
MAX_BREAKERS = 256  # breaker keys are code constants; the bound only guards against a caller's mistake


def graph_outcome(status: int) -> str:
    """The ``outcome`` attribute of one Graph response: few values, so dashboards can group by it."""
    if 200 <= status < 400:
        return "ok"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"
