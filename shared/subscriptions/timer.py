"""The renewal timer's work: reconcile the desired state, renew what is due, retry pending catch-ups.

It also runs at start (``run_on_startup``), so a new deployment subscribes itself at once; that is safe
on every instance because reconcile and renewal are lease-guarded and idempotent. A ``past_due`` run
(the app was down or a run overran) needs nothing special: whatever is due now is renewed now.
"""

from __future__ import annotations

from shared.http import configure_logging_once
from shared.services import SUBSCRIPTIONS, registry, settings
from shared.telemetry import get_logger, invocation_scope

log = get_logger("subscriptions.timer")


async def run_renewal(invocation_id: str, *, past_due: bool) -> None:
    with invocation_scope(invocation_id, "renew_subscriptions"):
        configure_logging_once()
        if past_due:
            log.warning("subscription renewal is running late (past due): renewing whatever is due now")
        service = await registry.get(SUBSCRIPTIONS)
        if settings().webhook_base_url:
            reconciled = await service.reconcile()
            log.info(
                "reconcile: created %d, removed %d, unchanged %d, busy %d, failed %d",
                len(reconciled.created),
                len(reconciled.removed),
                len(reconciled.unchanged),
                len(reconciled.busy),
                len(reconciled.failed),
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
