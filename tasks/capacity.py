"""The operator's Zapmail capacity: read and store it on a schedule, email admins when it runs short.

The scheduled snapshot makes two Zapmail reads (wallet balance, mailbox slot counters) and stores
them, so the admin home never calls Zapmail. When the reading does not cover the paid orders (or
those plus pending checkouts and the next cohort) the admins get one email a day per distinct
shortage. A provisioning run that stops for mailbox slots or for the wallet tells the admins at
once, with the numbers and what every waiting order needs (:func:`alert_capacity_stop`,
:func:`alert_wallet_stop`).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from prefect import task
from prefect.logging import get_logger
from sqlalchemy.orm import Session

from core.capacity import Capacity
from core.capacity import assess
from core.db import utcnow
from core.models import CapacitySnapshot
from core.models import Provision
from core.pricing import format_money
from tasks import notifications
from tasks import runtime
from tasks.policies import vendor_task_options


def _cents(amount: Decimal | None) -> int | None:
    return None if amount is None else int((amount * 100).to_integral_value())


@task(name="capacity-snapshot", **vendor_task_options(None))
def take_capacity_snapshot() -> dict[str, int | None]:
    """Read the wallet and the mailbox slots (two calls) and store them; warn admins if short."""
    client = runtime.zapmail()
    wallet = client.get_wallet_balance().wallet_balance
    quota = client.get_mailbox_quota()
    with runtime.db() as session:
        snapshot = CapacitySnapshot(
            taken_at=utcnow(),
            wallet_cents=_cents(wallet),
            slots_purchased=quota.purchased_mailboxes,
            slots_free=quota.available_mailboxes,
        )
        session.add(snapshot)
        session.flush()
        keys = _warn_if_short(session, assess(session))
    notifications.deliver_quietly(keys)
    return {
        "wallet_cents": _cents(wallet),
        "slots_purchased": quota.purchased_mailboxes,
        "slots_free": quota.available_mailboxes,
    }


def record_failed_snapshot(error: str) -> None:
    """Store a reading that failed, so the admin home says so instead of showing old numbers."""
    with runtime.db() as session:
        session.add(CapacitySnapshot(taken_at=utcnow(), error=error[:2000]))


def _warn_if_short(session: Session, capacity: Capacity) -> list[str]:
    """Queue one admin email per day and distinct shortage (the same one is not repeated)."""
    short = capacity.shortages
    if not short:
        return []
    digest = hashlib.sha256("\n".join(short).encode()).hexdigest()[:12]
    return notifications.queue_for_admins(
        session,
        key=f"capacity-short:{utcnow().date().isoformat()}:{digest}",
        subject="[outbound] Zapmail capacity runs short",
        body="\n".join(short) + "\n\nThe admin home shows the numbers behind this.",
    )


def alert_capacity_stop(
    provision_id: int, *, free: int | None, purchased: int | None, needed: int
) -> None:
    """Email the admins now: a run stopped for mailbox slots; the numbers and what unblocks all.

    Never raises: the run's own failure (and its email) must not be lost to this one.
    """
    try:
        _queue_capacity_stop(provision_id, free=free, purchased=purchased, needed=needed)
    except Exception as exc:  # noqa: BLE001 - the failure email of the run still goes out
        get_logger("tasks.capacity").warning("capacity alert not queued: %s", exc)


def _queue_capacity_stop(
    provision_id: int, *, free: int | None, purchased: int | None, needed: int
) -> None:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None:
            return
        capacity = assess(session)
        waiting = capacity.paid.mailboxes
        gap = max(needed, waiting) - (free or 0)
        wallet = capacity.snapshot.wallet_cents if capacity.snapshot is not None else None
        keys = notifications.queue_for_admins(
            session,
            key=f"capacity-stop:{provision_id}:{provision.run_epoch}",
            subject=f"[outbound] Provisioning stopped: Zapmail has {free} free mailbox slots",
            body=(
                f"Provision {provision_id} ({provision.user.email}) stopped before creating its "
                f"mailboxes.\nZapmail: {free} free mailbox slots of {purchased} purchased; this "
                f"run needs {needed}.\nAll paid orders waiting to be set up need {waiting} "
                f"mailboxes and {format_money(capacity.paid.cents)} for "
                f"{capacity.paid.domains} domains; wallet at the last reading: "
                f"{'unknown' if wallet is None else format_money(wallet)}.\n\n"
                f"Buy at least {max(gap, 1)} add-on mailbox slots (wallet), then retry the run "
                "from its admin page: it resumes at the mailboxes."
            ),
        )
    notifications.deliver_quietly(keys)


def alert_wallet_stop(
    provision_id: int, *, balance_cents: int | None, reserved_cents: int, needed_cents: int
) -> None:
    """Email the admins now: a run stopped before buying because the wallet is short.

    Never raises: the run's own failure (and its email) must not be lost to this one.
    """
    try:
        _queue_wallet_stop(
            provision_id,
            balance_cents=balance_cents,
            reserved_cents=reserved_cents,
            needed_cents=needed_cents,
        )
    except Exception as exc:  # noqa: BLE001 - the failure email of the run still goes out
        get_logger("tasks.capacity").warning("wallet alert not queued: %s", exc)


def _queue_wallet_stop(
    provision_id: int, *, balance_cents: int | None, reserved_cents: int, needed_cents: int
) -> None:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None:
            return
        waiting = assess(session).paid
        balance = "unknown" if balance_cents is None else format_money(balance_cents)
        # Enough for this run and every purchase in flight; the other paid orders are listed.
        gap = max(needed_cents + reserved_cents - (balance_cents or 0), 1)
        keys = notifications.queue_for_admins(
            session,
            key=f"wallet-stop:{provision_id}:{provision.run_epoch}",
            subject=f"[outbound] Provisioning stopped: the Zapmail wallet holds {balance}",
            body=(
                f"Provision {provision_id} ({provision.user.email}) stopped before buying its "
                f"domains; nothing was bought or charged.\nZapmail wallet: {balance}; reserved "
                f"by purchases in flight: {format_money(reserved_cents)}; this run needs "
                f"{format_money(needed_cents)}.\nAll paid orders waiting to be set up need "
                f"{format_money(waiting.cents)} for {waiting.domains} domains.\n\n"
                f"Top the wallet up by at least {format_money(gap)}, then retry the run from "
                "its admin page: it resumes at the domain purchase."
            ),
        )
    notifications.deliver_quietly(keys)
