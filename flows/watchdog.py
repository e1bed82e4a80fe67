"""The watchdog: no paid order without a live run or a named reason, no cancelled order billing.

Every minute (deployment ``watchdog/every-minute``, never overlapping itself): send the outbox
rows the portal left unsent, restart (or escalate) paid orders whose run ended without finishing
them, cancel orders past the dunning grace period, and cancel the Stripe subscription of
cancelled orders that still have one. See tasks/watchdog.py, tasks/stalled_orders.py and
tasks/billing_guard.py.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.billing_guard import enforce_dunning
from tasks.billing_guard import stop_billing_cancelled
from tasks.stalled_orders import find_stalled
from tasks.stalled_orders import restart_or_escalate
from tasks.watchdog import send_outbox
from tasks.watchdog import settle_orphaned_purchases


@flow(name="watchdog", flow_run_name="watchdog")
def watchdog(send_after_s: float = 30.0) -> dict[str, Any]:
    """One pass: outbox, stalled paid orders, dunning, billing of cancelled orders, orphaned buys."""
    sent = send_outbox(send_after_s)
    restarted = {f"{s['kind']}:{s['id']}": restart_or_escalate(s) for s in find_stalled()}
    dunned = enforce_dunning()
    stopped = stop_billing_cancelled()
    settled = settle_orphaned_purchases()
    return {
        "sent": sent,
        "restarted": restarted,
        "dunning_cancelled": dunned,
        "billing_stopped": stopped,
        "purchases_settled": {str(k): v for k, v in settled.items()},
    }


if __name__ == "__main__":
    watchdog()
