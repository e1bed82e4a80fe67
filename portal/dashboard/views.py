"""Student pages after checkout: home router, live progress, dashboard, refresh, password reveal,
upgrade and billing. Every query is scoped to the signed-in student's own provision (M4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from core import outbox
from core.crypto import SecretBox
from core.crypto import SecretBoxError
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pricing import PricingError
from core.pricing import daily_capacity
from core.pricing import quote_upgrade
from portal import billing
from portal import drafts
from portal import insights
from portal import orchestration
from portal import outbox_sender
from portal import subscriptions
from portal.dashboard import bp
from portal.db import get_db
from portal.domain_picker import Picker
from portal.extensions import student_required
from portal.progress import build_document
from portal.progress import load_snapshot
from portal.progress import progress_for_user
from portal.security import audit

DASHBOARD_STATES = {
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.PAST_DUE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.CANCELLED.value,
}


def _own_provision(**options: Any) -> Provision | None:
    query = select(Provision).where(Provision.user_id == current_user.id)
    if options.get("tier"):
        query = query.options(selectinload(Provision.tier))
    return get_db().scalar(query)


@bp.get("/")
def home() -> ResponseReturnValue:
    """Send everyone to the right place: sign-in, admin, wizard, progress or dashboard."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.is_admin:
        return redirect(url_for("admin.cohort"))
    if not current_user.is_student:
        abort(403)
    provision = _own_provision()
    if provision is None or provision.status == ProvisionStatus.PENDING_PAYMENT.value:
        return redirect(url_for("wizard.start"))
    if provision.status in DASHBOARD_STATES:
        return redirect(url_for("dashboard.overview"))
    return redirect(url_for("dashboard.progress"))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness probe for the load balancer."""
    return jsonify(status="ok")


@bp.get("/progress")
@student_required
def progress() -> ResponseReturnValue:
    """Live progress of the student's setup (the page polls progress.json)."""
    data = progress_for_user(get_db(), current_user.id)
    if data is None:
        return redirect(url_for("wizard.start"))
    return render_template("dashboard/progress.html", progress=data)


@bp.get("/progress.json")
@student_required
def progress_json() -> ResponseReturnValue:
    """The progress document: one indexed query, no Prefect call (polled every 3 s)."""
    snapshot = load_snapshot(get_db(), current_user.id)
    if snapshot is None:
        return jsonify(error="not_found", reason="You have no order yet."), 404
    # Weak tag: a 304 says nothing but the clock moved (the page advances the durations itself);
    # it skips building and serialising the document, and sends nothing back to the page.
    if request.if_none_match.contains_weak(snapshot.version):
        response = current_app.response_class(status=304)
    else:
        response = jsonify(build_document(snapshot))
    response.set_etag(snapshot.version, weak=True)
    return response


@bp.get("/dashboard")
@student_required
def overview() -> ResponseReturnValue:
    """The dashboard: domains, mailboxes, warmup charts, readiness, HeyReach and PlusVibe."""
    provision = insights.load_provision(get_db(), current_user.id)
    if provision is None:
        return redirect(url_for("wizard.start"))
    if provision.status not in DASHBOARD_STATES:
        return redirect(url_for("dashboard.progress"))
    return _render_dashboard(provision)


# Upgrades the dashboard reports instead of offering a new one: awaiting payment, being set up,
# or paid and stopped (an admin retries those; the student keeps their current package).
UNFINISHED_UPGRADES = [
    UpgradeStatus.PENDING_PAYMENT.value,
    UpgradeStatus.PROVISIONING.value,
    UpgradeStatus.FAILED.value,
]


def _render_dashboard(provision: Provision, *, password: str | None = None) -> str:
    cooldown = int(current_app.config["REFRESH_COOLDOWN_S"])
    last = provision.last_refresh_requested_at
    wait = 0
    if last is not None:
        wait = max(0, int(cooldown - (utcnow() - last).total_seconds()))
    pending_upgrade = get_db().scalar(
        select(Upgrade)
        .where(
            Upgrade.provision_id == provision.id,
            Upgrade.status.in_(UNFINISHED_UPGRADES),
        )
        .order_by(Upgrade.id.desc())
        .limit(1)
    )
    larger = get_db().scalar(
        select(Tier.id)
        .where(Tier.active.is_(True), Tier.domain_count > provision.tier.domain_count)
        .limit(1)
    )
    return render_template(
        "dashboard/overview.html",
        provision=provision,
        tier=provision.tier,
        data=insights.dashboard(provision),
        capacity=daily_capacity(provision.tier),
        password=password,
        refresh_wait_s=wait,
        pending_upgrade=pending_upgrade,
        can_upgrade=larger is not None and provision.status == ProvisionStatus.ACTIVE.value,
    )


@bp.get("/dashboard/mailboxes/<int:mailbox_id>")
@student_required
def mailbox(mailbox_id: int) -> ResponseReturnValue:
    """One mailbox's warmup history (404 unless it belongs to the student)."""
    db = get_db()
    box = db.scalar(
        select(Mailbox)
        .join(Domain)
        .join(Provision)
        .where(Mailbox.id == mailbox_id, Provision.user_id == current_user.id)
        .options(selectinload(Mailbox.snapshots), selectinload(Mailbox.domain))
    )
    if box is None:
        abort(404)
    domain = box.domain
    view = insights.mailbox_view(
        box, (domain.status or "").upper() == "ACTIVE" and bool(domain.dmarc_email), utcnow().date()
    )
    history = sorted(box.snapshots, key=lambda s: s.day, reverse=True)[: insights.HISTORY_DAYS]
    return render_template("dashboard/mailbox.html", box=box, view=view, history=history)


@bp.post("/dashboard/refresh")
@student_required
def refresh() -> ResponseReturnValue:
    """Start the refresh-dashboard flow, at most once per cooldown per student."""
    db = get_db()
    provision = _own_provision()
    if provision is None or provision.status not in DASHBOARD_STATES:
        abort(404)
    cooldown = int(current_app.config["REFRESH_COOLDOWN_S"])
    now = utcnow()
    # Conditional UPDATE: two clicks (or tabs) cannot both start a run.
    won = db.execute(
        update(Provision)
        .where(
            Provision.id == provision.id,
            or_(
                Provision.last_refresh_requested_at.is_(None),
                Provision.last_refresh_requested_at <= now - timedelta(seconds=cooldown),
            ),
        )
        .values(last_refresh_requested_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.rollback()
        wait = cooldown
        if provision.last_refresh_requested_at is not None:
            wait = max(
                1, int(cooldown - (now - provision.last_refresh_requested_at).total_seconds())
            )
        flash(
            f"Numbers were refreshed recently; you can refresh again in {max(1, round(wait / 60))} min.",
            "warning",
        )
        return redirect(url_for("dashboard.overview"), code=303)
    # Started after the commit by the outbox sender (never while this transaction is open).
    outbox.enqueue(
        db,
        key=f"refresh:{provision.id}:{int(now.timestamp())}",
        deployment=orchestration.REFRESH_DEPLOYMENT,
        parameters={"provision_id": provision.id},
    )
    db.commit()
    outbox_sender.send_committed(db)
    flash("Refreshing your numbers from the providers; this takes a minute or two.", "success")
    return redirect(url_for("dashboard.overview"), code=303)


@bp.post("/dashboard/plusvibe-password")
@student_required
def reveal_password() -> ResponseReturnValue:
    """Show the PlusVibe password once, on explicit request; the reveal is audited."""
    db = get_db()
    provision = insights.load_provision(db, current_user.id)
    if provision is None or provision.status not in DASHBOARD_STATES:
        abort(404)
    if not provision.plusvibe_client_password_enc:
        flash("Your PlusVibe login is not ready yet.", "warning")
        return redirect(url_for("dashboard.overview"), code=303)
    try:
        secret = SecretBox.from_settings(current_app.extensions["settings"]).open(
            provision.plusvibe_client_password_enc
        )
    except SecretBoxError:
        current_app.logger.error(
            "PlusVibe password of provision %s cannot be decrypted", provision.id
        )
        flash("The password cannot be shown right now; your instructor has been told.", "error")
        return redirect(url_for("dashboard.overview"), code=303)
    audit(db, "plusvibe_password_revealed", target_type="provision", target_id=provision.id)
    db.commit()
    return _render_dashboard(provision, password=secret.get_secret_value())


@bp.post("/billing/portal")
@student_required
def billing_portal() -> ResponseReturnValue:
    """Open the Stripe customer portal (cancel, update card)."""
    provision = _own_provision()
    if provision is None or not provision.stripe_customer_id:
        abort(404)
    try:
        url = billing.billing_portal_url(provision.stripe_customer_id)
    except billing.BillingError as exc:
        current_app.logger.warning("billing portal: %s", exc)
        flash(exc.student_message, "error")
        return redirect(url_for("dashboard.overview"), code=303)
    return redirect(url, code=303)


def _upgradable() -> Provision:
    provision = _own_provision(tier=True)
    if provision is None or provision.status != ProvisionStatus.ACTIVE.value:
        abort(404)
    # A paid upgrade that stopped is retried by us; a second one bought meanwhile would start
    # from the wrong tier and sit paid and unfulfilled.
    stalled = get_db().scalar(
        select(Upgrade.id).where(
            Upgrade.provision_id == provision.id,
            Upgrade.status.in_([UpgradeStatus.PROVISIONING.value, UpgradeStatus.FAILED.value]),
        )
    )
    if stalled is not None:
        abort(404)
    return provision


def _upgrade_draft() -> dict[str, Any]:
    return drafts.load(get_db(), current_user.id, drafts.UPGRADE)


@bp.route("/upgrade", methods=["GET", "POST"])
@student_required
def upgrade() -> ResponseReturnValue:
    """Choose a larger package; the upgrade is paid before anything changes."""
    db = get_db()
    provision = _upgradable()
    tiers = list(
        db.scalars(
            select(Tier)
            .where(Tier.active.is_(True), Tier.domain_count > provision.tier.domain_count)
            .order_by(Tier.sort_order, Tier.id)
        )
    )
    quotes = {}
    for tier in tiers:
        try:
            quotes[tier.id] = quote_upgrade(provision.tier, tier)
        except PricingError:
            continue
    draft = _upgrade_draft()
    if request.method == "POST":
        try:
            tier_id = int(request.form.get("tier_id", ""))
        except ValueError:
            tier_id = -1
        if tier_id not in quotes:
            flash("Choose one of the larger packages.", "error")
            return render_template(
                "dashboard/upgrade.html",
                provision=provision,
                tiers=tiers,
                quotes=quotes,
                draft=draft,
            ), 400
        if draft["to_tier_id"] != tier_id:
            draft["to_tier_id"] = tier_id
            # A different package needs a different number of extra domains: keep the choices
            # but cut them to the new count.
            draft["domains"] = draft["domains"][: quotes[tier_id].extra_domains]
        drafts.save(db, current_user.id, drafts.UPGRADE, draft)
        db.commit()
        return redirect(url_for("dashboard.upgrade_domains"))
    return render_template(
        "dashboard/upgrade.html", provision=provision, tiers=tiers, quotes=quotes, draft=draft
    )


def _upgrade_target(provision: Provision, draft: dict[str, Any]) -> tuple[Tier, Any] | None:
    if draft["to_tier_id"] is None:
        return None
    tier = get_db().get(Tier, draft["to_tier_id"])
    if tier is None or not tier.active:
        return None
    try:
        return tier, quote_upgrade(provision.tier, tier)
    except PricingError:
        return None


@bp.route("/upgrade/domains", methods=["GET", "POST"])
@student_required
def upgrade_domains() -> ResponseReturnValue:
    """Pick the extra domains the upgrade adds (same availability rules as the wizard)."""
    db = get_db()
    provision = _upgradable()
    draft = _upgrade_draft()
    target = _upgrade_target(provision, draft)
    if target is None:
        return redirect(url_for("dashboard.upgrade"))
    tier, quote = target
    owned = frozenset(d.name for d in provision.domains)
    picker = Picker(db, draft, quote.extra_domains, current_user.id, owned)
    if request.method == "POST":
        outcome = picker.handle(request.form)
        drafts.save(db, current_user.id, drafts.UPGRADE, draft)
        db.commit()
        if outcome == "continue":
            return redirect(url_for("dashboard.upgrade_review"))
        if outcome == "back":
            return redirect(url_for("dashboard.upgrade"))
        return redirect(url_for("dashboard.upgrade_domains"))
    return render_template(
        "dashboard/upgrade_domains.html",
        provision=provision,
        tier=tier,
        quote=quote,
        draft=draft,
        results=picker.results(),
        post_url=url_for("dashboard.upgrade_domains"),
        paused_s=0,
        required=quote.extra_domains,
    )


@bp.route("/upgrade/review", methods=["GET", "POST"])
@student_required
def upgrade_review() -> ResponseReturnValue:
    """Review the upgrade's price and pay: proration now plus the extra setup fee."""
    db = get_db()
    provision = _upgradable()
    draft = _upgrade_draft()
    target = _upgrade_target(provision, draft)
    if target is None:
        return redirect(url_for("dashboard.upgrade"))
    tier, quote = target
    owned = frozenset(d.name for d in provision.domains)
    picker = Picker(db, draft, quote.extra_domains, current_user.id, owned)
    if not picker.ready():
        return redirect(url_for("dashboard.upgrade_domains"))
    if request.method == "GET":
        return render_template(
            "dashboard/upgrade_review.html",
            provision=provision,
            tier=tier,
            quote=quote,
            draft=draft,
        )
    return _pay_upgrade(provision, tier, quote, draft)


def _pay_upgrade(
    provision: Provision, tier: Tier, quote: Any, draft: dict[str, Any]
) -> ResponseReturnValue:
    db = get_db()
    if tier.stripe_monthly_price_id is None:
        try:
            billing.ensure_tier_prices(tier)
            db.commit()
        except billing.BillingError as exc:
            db.rollback()
            flash(exc.student_message, "error")
            return redirect(url_for("dashboard.upgrade_review"), code=303)
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
        return redirect(url_for("dashboard.upgrade_domains"), code=303)
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
        return redirect(url_for("dashboard.upgrade_review"), code=303)
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
