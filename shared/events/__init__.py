"""The change-notification pipeline: webhook logic, queue processors, event bus and handlers.

Flow: Graph POST → ``webhook.NotificationWebhook.accept`` (validate, check clientState, pack into
queue messages) → ``graph-notifications`` / ``graph-lifecycle`` → ``processor.NotificationProcessor``
/ ``lifecycle.LifecycleProcessor`` → ``dispatch.ExactlyOnceDispatcher`` → ``bus.EventBus`` handlers
(``handlers``: cache invalidation, forwarding to ``graph-events``). Nothing here imports msgraph.
"""
