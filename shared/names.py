"""Names that several parts of the app (and its operators) must spell the same way: queues, breaker keys,
table short names. Imports nothing, so any module (the webhook path included) can use it for free."""

from __future__ import annotations

# Queues (each has a ``<name>-poison`` twin, written by the host or by the processors themselves).
NOTIFICATIONS_QUEUE = "graph-notifications"  # change notifications, as the webhook persisted them
LIFECYCLE_QUEUE = "graph-lifecycle"  # lifecycle notifications
EVENTS_QUEUE = "graph-events"  # normalized events for downstream systems
MIRROR_ROUNDS_QUEUE = "mirror-rounds"  # debounced "run a directory mirror round" messages
WORK_QUEUES = (NOTIFICATIONS_QUEUE, LIFECYCLE_QUEUE, EVENTS_QUEUE, MIRROR_ROUNDS_QUEUE)
POISON_SUFFIX = "-poison"
# The event hub path's poison store: ``graph-eventhub-poison`` holds events that are not Graph's shape (there is
# no ``graph-eventhub`` queue; the name only makes the poison queue's, as for the queues above).
EVENTHUB_SOURCE = "graph-eventhub"

# Circuit breakers, one per Graph workload: an Outlook outage must not block directory reads.
DIRECTORY_BREAKER = "graph-directory"
MAIL_BREAKER = "graph-mail"
SUBSCRIPTIONS_BREAKER = "graph-subscriptions"
GRAPH_BREAKERS = (DIRECTORY_BREAKER, MAIL_BREAKER, SUBSCRIPTIONS_BREAKER)

# Tables, by short name (``STORAGE_TABLE_PREFIX`` is put in front by ``shared.storage.Tables``).
CACHE_TABLE = "cache"
BREAKERS_TABLE = "breakers"
SUBSCRIPTIONS_TABLE = "subscriptions"
ORIGINS_TABLE = "subscriptionorigins"
FLEET_TABLE = "fleet"
LEASES_TABLE = "leases"
DELTA_LINKS_TABLE = "deltalinks"
DEDUPE_TABLE = "dedupe"
MIRROR_TABLE = "mirror"
