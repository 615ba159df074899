"""Keeping Graph subscriptions alive: desired state, reconcile, renewal, lifecycle reactions, delta catch-up.

``desired`` parses what should exist, ``service.SubscriptionService`` makes it so and keeps it alive,
``catchup.DeltaCatchup`` replays what a lapsed subscription missed, ``leases`` keeps concurrent runs
from doing the same work twice. Nothing here imports msgraph: Graph is reached through ``shared.graph``.
"""
