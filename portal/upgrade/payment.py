"""Paying an upgrade: record it with its new domains, charge the card on file, start the run.

The pending upgrade is committed before the charge, so a crash after it leaves a row that the
webhook (invoice.paid with our metadata) can complete.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db import utcnow
from core.models import Domain
from core.models import Provision
from core.models import PurchaseState
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pricing import UpgradeQuote
from portal import billing
from portal import drafts
from portal import outbox_sender
from portal import subscriptions
from portal.db import get_db
from portal.domain_picker import Picker


def pay(
    provision: Provision, tier: Tier, quote: UpgradeQuote, draft: dict[str, Any]
) -> ResponseReturnValue:
    """Record the upgrade with its new domains, charge the card, then queue the upgrade run."""
    db = get_db()
    if tier.stripe_monthly_price_id is None:
        try:
            billing.ensure_tier_prices(tier)
            db.commit()
        except billing.BillingError as exc:
            db.rollback()
            flash(exc.student_message, "error")
            return redirect(url_for("upgrade.review"), code=303)
    upgrade_row = db.get(Upgrade, draft["upgrade_id"]) if draft["upgrade_id"] else None
    if (
        upgrade_row is None
        or upgrade_row.provision_id != provision.id
        or upgrade_row.status != UpgradeStatus.PENDING_PAYMENT.value
        or upgrade_row.to_tier_id != tier.id
    ):
        # Abandoned unpaid upgrades of this provision stop holding their domain names.
        for stale in db.scalars(
            select(Upgrade).where(
                Upgrade.provision_id == provision.id,
                Upgrade.status == UpgradeStatus.PENDING_PAYMENT.value,
                Upgrade.stripe_invoice_id.is_(None),
                Upgrade.stripe_proration_invoice_id.is_(None),
            )
        ):
            stale.status = UpgradeStatus.CANCELLED.value
            db.execute(
                Domain.__table__.delete().where(
                    Domain.upgrade_id == stale.id,
                    Domain.purchase_state == PurchaseState.SELECTED.value,
                )
            )
        upgrade_row = Upgrade(
            provision_id=provision.id, from_tier_id=provision.tier_id, to_tier_id=tier.id
        )
        db.add(upgrade_row)
    try:
        db.flush()
        db.execute(
            Domain.__table__.delete().where(
                Domain.upgrade_id == upgrade_row.id,
                Domain.purchase_state == PurchaseState.SELECTED.value,
            )
        )
        results = Picker(db, draft, quote.extra_domains, current_user.id).results()
        for name in draft["domains"]:
            db.add(
                Domain(
                    provision_id=provision.id,
                    upgrade_id=upgrade_row.id,
                    name=name,
                    price_cents=results[name].price_cents,
                )
            )
        db.flush()
    except IntegrityError:
        db.rollback()
        flash(
            "One of your new domains was just chosen by another student. Pick another one.", "error"
        )
        return redirect(url_for("upgrade.domains"), code=303)
    draft["upgrade_id"] = upgrade_row.id
    drafts.save(db, current_user.id, drafts.UPGRADE, draft)
    # Record the pending upgrade before charging: a crash after the charge leaves a row the
    # webhook (invoice.paid with our metadata) can complete.
    db.commit()
    try:
        charge = billing.charge_upgrade(upgrade_row, provision, tier, quote)
    except billing.BillingError as exc:
        current_app.logger.warning("upgrade %s payment failed: %s", upgrade_row.id, exc)
        upgrade_row.status_reason = exc.student_message
        db.commit()
        flash(exc.student_message, "error")
        return redirect(url_for("upgrade.review"), code=303)
    upgrade_row.stripe_invoice_id = charge.fee_invoice_id
    upgrade_row.stripe_proration_invoice_id = charge.proration_invoice_id
    now = utcnow()
    if charge.fee_paid:
        upgrade_row.fee_paid_at = upgrade_row.fee_paid_at or now
    if charge.proration_paid:
        upgrade_row.proration_paid_at = upgrade_row.proration_paid_at or now
    # Keep the payment facts even if starting the flow fails: paying again is then a no-op
    # (every charge above is idempotent) that only retries the start.
    db.commit()
    # The run is queued in the outbox and started by the sender after this commit.
    outcome = subscriptions.maybe_start_upgrade(db, upgrade_row)
    if outcome in ("upgrade_started", "upgrade_already_started"):
        drafts.clear(db, current_user.id, drafts.UPGRADE)
    db.commit()
    outbox_sender.send_committed(db)
    if outcome == "upgrade_awaiting_payment":
        flash("Your payment is being confirmed; the upgrade starts as soon as it is.", "info")
        return redirect(url_for("dashboard.overview"), code=303)
    flash("Upgrade paid: your new domains and mailboxes are being set up.", "success")
    return redirect(url_for("dashboard.progress"), code=303)
