"""The renewal timer's work: reconcile the desired state, renew what is due, retry pending catch-ups.

It also runs at start (``run_on_startup``), so a new deployment subscribes itself at once; that is safe
on every instance because reconcile and renewal are lease-guarded and idempotent. A ``past_due`` run
(the app was down or a run overran) needs nothing special: whatever is due now is renewed now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.telemetry import get_logger

if TYPE_CHECKING:  # the subscription service (and the Graph SDK behind it) is built on first use
    from shared.subscriptions.service import SubscriptionService

log = get_logger("subscriptions.timer")


async def run_renewal(service: SubscriptionService, *, reconcile: bool, past_due: bool) -> None:
    """One run; ``reconcile`` is False when no webhook URL is configured (nothing can be subscribed)."""
    if past_due:
        log.warning("subscription renewal is running late (past due): renewing whatever is due now")
    if reconcile:
        reconciled = await service.reconcile()
        log.info(
            "reconcile: created %d, removed %d, unchanged %d, busy %d, failed %d, no mailbox %d, deferred %d",
            len(reconciled.created),
            len(reconciled.removed),
            len(reconciled.unchanged),
            len(reconciled.busy),
            len(reconciled.failed),
            len(reconciled.no_mailbox),
            len(reconciled.deferred),
        )
    result = await service.renew_due()
    log.info(
        "renewal: renewed %d, recreated %d, failed %d, skipped %d, catch-ups %d",
        result.renewed,
        result.recreated,
        result.failed,
        result.skipped,
        len(result.catchups),
    )
