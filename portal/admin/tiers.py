"""Packages (tiers): list, create, edit, offer/hide and reorder them, keeping Stripe prices in sync."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.models import Provision
from core.models import ProvisionStatus
from core.models import Tier
from core.pricing import daily_capacity
from portal import billing
from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.admin.forms import MoveForm
from portal.admin.forms import TierForm
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit


def _tier_details(tier: Tier) -> dict[str, Any]:
    return {
        "slug": tier.slug,
        "domain_count": tier.domain_count,
        "mailboxes_per_domain": tier.mailboxes_per_domain,
        "setup_cents": tier.setup_cents,
        "monthly_cents": tier.monthly_cents,
        "setup_price": tier.stripe_setup_price_id,
        "monthly_price": tier.stripe_monthly_price_id,
        "active": tier.active,
        "replacements_included": tier.replacements_included,
        "replacement_fee_cents": tier.replacement_fee_cents,
    }


def _sold(tier: Tier) -> bool:
    return bool(
        get_db().scalar(
            select(func.count())
            .select_from(Provision)
            .where(
                Provision.tier_id == tier.id,
                Provision.status != ProvisionStatus.PENDING_PAYMENT.value,
            )
        )
    )


def _form_page(form: TierForm, tier: Tier | None, status: int) -> ResponseReturnValue:
    return render_template("admin/tier_form.html", form=form, tier=tier), status


def _sync_prices(form: TierForm, tier: Tier, what: str, **changed: bool) -> list[str] | int:
    """Flush the tier and bring its Stripe prices in line: the archived price ids, or the status
    of a refusal (rolled back, with the reason on the form or in a flash)."""
    db = get_db()
    try:
        db.flush()
        return billing.ensure_tier_prices(tier, **changed)
    except IntegrityError:
        db.rollback()
        form.slug.errors.append("Another package already uses this slug.")
        return 400
    except billing.BillingError as exc:
        db.rollback()
        flash(f"Stripe did not accept the {what}: {exc}", "error")
        return 502


@bp.get("/tiers")
@admin_required
def tiers() -> ResponseReturnValue:
    """All packages in display order."""
    db = get_db()
    rows = list(db.scalars(select(Tier).order_by(Tier.sort_order, Tier.id)))
    used = dict(
        db.execute(select(Provision.tier_id, func.count()).group_by(Provision.tier_id)).all()
    )
    return render_template(
        "admin/tiers.html",
        tiers=rows,
        used=used,
        confirm_form=ConfirmForm(),
        move_form=MoveForm(),
        capacity=daily_capacity,
    )


@bp.route("/tiers/new", methods=["GET", "POST"])
@admin_required
def tier_new() -> ResponseReturnValue:
    """Create a package and its Stripe product and prices."""
    db = get_db()
    form = TierForm()
    if not form.validate_on_submit():
        return _form_page(form, None, 400 if request.method == "POST" else 200)
    top = db.scalar(select(func.max(Tier.sort_order))) or 0
    tier = Tier(sort_order=top + 10)
    form.populate_obj(tier)
    db.add(tier)
    refused = _sync_prices(form, tier, "package")
    if isinstance(refused, int):
        return _form_page(form, None, refused)
    audit(db, "tier_created", target_type="tier", target_id=tier.id, details=_tier_details(tier))
    db.commit()
    flash(f"Package {tier.name} created.", "success")
    return redirect(url_for("admin.tiers"), code=303)


@bp.route("/tiers/<int:tier_id>/edit", methods=["GET", "POST"])
@admin_required
def tier_edit(tier_id: int) -> ResponseReturnValue:
    """Edit a package; a new price replaces the old one in Stripe (prices are immutable)."""
    db = get_db()
    tier = db.get(Tier, tier_id)
    if tier is None:
        abort(404)
    # The tier fills the form only when showing it: a submitted form stands on its own, so a
    # missing field is refused instead of quietly keeping the stored value.
    form = TierForm(obj=tier if request.method == "GET" else None)
    if not form.validate_on_submit():
        return _form_page(form, tier, 400 if request.method == "POST" else 200)
    if _sold(tier) and (
        form.domain_count.data != tier.domain_count
        or form.mailboxes_per_domain.data != tier.mailboxes_per_domain
    ):
        flash(
            "Students already bought this package: its size cannot change. Create a new package instead.",
            "error",
        )
        return _form_page(form, tier, 400)
    before = _tier_details(tier)
    changed_setup = form.setup_cents.data != tier.setup_cents
    changed_monthly = form.monthly_cents.data != tier.monthly_cents
    form.populate_obj(tier)
    archived = _sync_prices(
        form, tier, "change", changed_setup=changed_setup, changed_monthly=changed_monthly
    )
    if isinstance(archived, int):
        return _form_page(form, tier, archived)
    audit(
        db,
        "tier_updated",
        target_type="tier",
        target_id=tier.id,
        details={"before": before, "after": _tier_details(tier), "archived_prices": archived},
    )
    db.commit()
    flash(f"Package {tier.name} saved.", "success")
    return redirect(url_for("admin.tiers"), code=303)


@bp.post("/tiers/<int:tier_id>/toggle")
@admin_required
def tier_toggle(tier_id: int) -> ResponseReturnValue:
    """Stop or resume offering a package (existing students keep theirs)."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    tier = db.get(Tier, tier_id)
    if tier is None:
        abort(404)
    tier.active = not tier.active
    audit(
        db,
        "tier_activated" if tier.active else "tier_deactivated",
        target_type="tier",
        target_id=tier.id,
    )
    db.commit()
    flash(f"{tier.name} is {'offered again' if tier.active else 'no longer offered'}.", "success")
    return redirect(url_for("admin.tiers"), code=303)


@bp.post("/tiers/<int:tier_id>/move")
@admin_required
def tier_move(tier_id: int) -> ResponseReturnValue:
    """Move a package up or down in the students' list."""
    form = MoveForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    ordered = list(db.scalars(select(Tier).order_by(Tier.sort_order, Tier.id)))
    index = next((i for i, t in enumerate(ordered) if t.id == tier_id), None)
    if index is None:
        abort(404)
    other = index - 1 if form.direction.data == "up" else index + 1
    if 0 <= other < len(ordered):
        ordered[index], ordered[other] = ordered[other], ordered[index]
        # Renumber everything: equal sort orders would make the swap a no-op.
        for position, tier in enumerate(ordered):
            tier.sort_order = (position + 1) * 10
        audit(
            db,
            "tier_moved",
            target_type="tier",
            target_id=tier_id,
            details={"direction": form.direction.data},
        )
        db.commit()
    return redirect(url_for("admin.tiers"), code=303)
