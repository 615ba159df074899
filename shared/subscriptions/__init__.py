"""Keeping Graph subscriptions alive: desired state, reconcile, renewal, lifecycle reactions, delta catch-up.

``desired`` parses what should exist and ``records`` stores the subscriptions we own.
``service.SubscriptionService`` makes the desired ones exist and keeps every one alive; it is built from
``reconcile``, ``renewal``, ``reactions`` and ``management``, each on the shared ``steps``.
``catchup.DeltaCatchup`` replays what a lapsed subscription missed, ``leases`` keeps concurrent runs
from doing the same work twice. Nothing here imports msgraph: Graph is reached through ``shared.graph``.
"""
