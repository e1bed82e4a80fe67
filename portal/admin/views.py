"""Admin pages: the cohort, a provision's detail with retry / cancel / refund, and tiers.

Every route needs the admin role (403 otherwise) and every action writes the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from core import outbox
from core.cancellation import release_again
from core.cancellation import request_cancellation
from core.db import utcnow
from core.health import HealthLabel
from core.health import mailbox_verdict
from core.health import overall_verdict
from core.models import AuditLog
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import Role
from core.models import StepStatus
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.models import User
from core.pipeline import PROVISION_STEPS
from core.pipeline import STEPS as STEP_INFO
from core.pricing import daily_capacity
from core.pricing import format_money
from portal import billing
from portal import orchestration
from portal import outbox_sender
from portal.admin import bp
from portal.admin.forms import CANCEL_ORDER
from portal.admin.forms import KEEP_ORDER
from portal.admin.forms import ConfirmForm
from portal.admin.forms import MoveForm
from portal.admin.forms import NoteForm
from portal.admin.forms import RefundForm
from portal.admin.forms import TierForm
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit

SORT_KEYS = ("email", "tier", "status", "step", "time_in_step", "created")
ATTENTION = {ProvisionStatus.FAILED.value, ProvisionStatus.PAST_DUE.value}


def _step_title(key: str) -> str:
    base = key.split(":", 1)[-1]
    info = STEP_INFO.get(base)
    title = info.title if info else base
    return f"Upgrade: {title}" if key.startswith("upgrade-") else title


def _cohort_rows() -> list[dict[str, Any]]:
    db = get_db()
    now = utcnow()
    students = db.execute(
        select(User, Provision, Tier)
        .outerjoin(Provision, Provision.user_id == User.id)
        .outerjoin(Tier, Tier.id == Provision.tier_id)
        .where(User.role == Role.STUDENT.value)
    ).all()
    provision_ids = [p.id for _, p, _ in students if p is not None]
    steps: dict[int, list[Any]] = {}
    boxes: dict[int, list[Any]] = {}
    if provision_ids:
        for step in db.scalars(
            select(ProvisioningStep)
            .where(ProvisioningStep.provision_id.in_(provision_ids))
            .order_by(ProvisioningStep.provision_id, ProvisioningStep.id)
        ):
            steps.setdefault(step.provision_id, []).append(step)
        for row in db.execute(
            select(Domain.provision_id, Domain.status, Domain.dmarc_email, Mailbox.health_label)
            .join(Mailbox, Mailbox.domain_id == Domain.id)
            .where(Domain.provision_id.in_(provision_ids))
        ):
            boxes.setdefault(row.provision_id, []).append(row)
    rows = []
    for user, provision, tier in students:
        row: dict[str, Any] = {
            "user": user,
            "provision": provision,
            "tier": tier,
            "status": provision.status if provision else "no_order",
            "step": None,
            "step_key": None,
            "step_status": None,
            "time_in_step": None,
            "error": None,
            "readiness": None,
            "labels": {},
        }
        if provision is not None:
            own = steps.get(provision.id, [])
            order = {key: i for i, key in enumerate(PROVISION_STEPS)}
            own.sort(
                key=lambda s: (s.step_key.startswith("upgrade-"), order.get(s.step_key, 99), s.id)
            )
            current = next(
                (
                    s
                    for s in own
                    if s.status
                    in (StepStatus.RUNNING.value, StepStatus.WAITING.value, StepStatus.FAILED.value)
                ),
                None,
            )
            if current is None and provision.status == ProvisionStatus.PROVISIONING.value:
                current = next((s for s in own if s.status == StepStatus.PENDING.value), None)
            if current is not None:
                row["step"] = _step_title(current.step_key)
                row["step_key"] = current.step_key
                row["step_status"] = current.status
                if current.started_at is not None:
                    row["time_in_step"] = int(
                        ((current.finished_at or now) - current.started_at).total_seconds()
                    )
            failed = [s for s in own if s.status == StepStatus.FAILED.value]
            if failed:
                row["error"] = failed[-1].error_detail or failed[-1].error_message
            elif provision.status_reason and provision.status in ATTENTION:
                row["error"] = provision.status_reason
            mailboxes = boxes.get(provision.id, [])
            started = provision.activated_at.date() if provision.activated_at else None
            verdicts = []
            for box in mailboxes:
                label = (
                    HealthLabel(box.health_label) if box.health_label in set(HealthLabel) else None
                )
                if label is not None:
                    row["labels"][label.value] = row["labels"].get(label.value, 0) + 1
                verdicts.append(
                    mailbox_verdict(
                        label=label,
                        warmup_started_on=started,
                        today=now.date(),
                        dns_ok=(box.status or "").upper() == "ACTIVE" and bool(box.dmarc_email),
                    )
                )
            row["readiness"] = overall_verdict(verdicts) if verdicts else None
        rows.append(row)
    return rows


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key == "email":
        return row["user"].email
    if key == "tier":
        return row["tier"].sort_order if row["tier"] else -1
    if key == "status":
        return row["status"]
    if key == "step":
        return row["step"] or ""
    if key == "time_in_step":
        return row["time_in_step"] or -1
    created: datetime = row["provision"].created_at if row["provision"] else row["user"].created_at
    return created


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    """The admin home is the cohort."""
    return redirect(url_for("admin.cohort"))


@bp.get("/cohort")
@admin_required
def cohort() -> ResponseReturnValue:
    """Every student with tier, status, current step, time in step, last error and readiness."""
    rows = _cohort_rows()
    status = request.args.get("status", "")
    tier_slug = request.args.get("tier", "")
    query = request.args.get("q", "").strip().lower()
    attention = request.args.get("attention") == "1"
    if status:
        rows = [r for r in rows if r["status"] == status]
    if tier_slug:
        rows = [r for r in rows if r["tier"] is not None and r["tier"].slug == tier_slug]
    if query:
        rows = [
            r
            for r in rows
            if query in r["user"].email.lower() or query in (r["user"].name or "").lower()
        ]
    if attention:
        rows = [
            r
            for r in rows
            if r["status"] in ATTENTION
            or r["labels"].get("at-risk")
            or r["labels"].get("burned")
            or (r["step_status"] == StepStatus.FAILED.value)
        ]
    sort = request.args.get("sort", "time_in_step")
    if sort not in SORT_KEYS:
        sort = "time_in_step"
    descending = request.args.get("dir", "desc" if sort == "time_in_step" else "asc") == "desc"
    rows.sort(key=lambda r: _sort_value(r, sort), reverse=descending)
    tiers = list(get_db().scalars(select(Tier).order_by(Tier.sort_order, Tier.id)))
    counts: dict[str, int] = {}
    for row in _cohort_rows():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return render_template(
        "admin/cohort.html",
        rows=rows,
        tiers=tiers,
        statuses=[s.value for s in ProvisionStatus] + ["no_order"],
        counts=counts,
        filters={"status": status, "tier": tier_slug, "q": query, "attention": attention},
        sort=sort,
        descending=descending,
    )


def _provision_or_404(provision_id: int) -> Provision:
    provision = get_db().scalar(
        select(Provision)
        .where(Provision.id == provision_id)
        .options(
            selectinload(Provision.user),
            selectinload(Provision.tier),
            selectinload(Provision.domains).selectinload(Domain.mailboxes),
            selectinload(Provision.upgrades),
        )
    )
    if provision is None:
        abort(404)
    return provision


@bp.get("/provisions/<int:provision_id>")
@admin_required
def provision_detail(provision_id: int) -> ResponseReturnValue:
    """A provision's step log, flow run, vendor ids and the retry / cancel / refund actions."""
    db = get_db()
    provision = _provision_or_404(provision_id)
    steps = list(
        db.scalars(
            select(ProvisioningStep)
            .where(ProvisioningStep.provision_id == provision.id)
            .order_by(ProvisioningStep.id)
        )
    )
    order = {key: i for i, key in enumerate(PROVISION_STEPS)}
    # The provision's own steps in pipeline order, then each upgrade's steps in theirs.
    steps.sort(
        key=lambda s: (
            s.step_key.split(":")[0] if ":" in s.step_key else "",
            order.get(s.step_key.split(":")[-1], 99),
        )
    )
    run = None
    run_error = None
    if provision.current_flow_run_id:
        try:
            run = orchestration.read_run(provision.current_flow_run_id)
        except orchestration.OrchestrationError as exc:
            run_error = str(exc)
    history = list(
        db.scalars(
            select(AuditLog)
            .where(AuditLog.target_type == "provision", AuditLog.target_id == provision.id)
            .order_by(AuditLog.id.desc())
            .limit(50)
        )
    )
    actors = {
        u.id: u.email
        for u in db.scalars(
            select(User).where(User.id.in_({a.actor_id for a in history if a.actor_id}))
        )
    }
    return render_template(
        "admin/provision.html",
        provision=provision,
        steps=steps,
        step_title=_step_title,
        run=run,
        run_error=run_error,
        run_url=orchestration.flow_run_url(provision.current_flow_run_id)
        if provision.current_flow_run_id
        else None,
        upgrade_url=orchestration.flow_run_url,
        history=history,
        actors=actors,
        refund_form=RefundForm(),
        note_form=NoteForm(),
        confirm_form=ConfirmForm(),
        capacity=daily_capacity(provision.tier),
    )


def _failed_upgrade(provision: Provision) -> Upgrade | None:
    failed = [
        u for u in provision.upgrades if u.status == UpgradeStatus.FAILED.value and u.flow_run_id
    ]
    return failed[-1] if failed else None


@bp.post("/provisions/<int:provision_id>/retry")
@admin_required
def retry(provision_id: int) -> ResponseReturnValue:
    """Retry a failed provisioning (or upgrade) run from its last good step."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    provision = _provision_or_404(provision_id)
    back = redirect(url_for("admin.provision_detail", provision_id=provision.id), code=303)
    upgrade_row = _failed_upgrade(provision)
    try:
        if provision.status == ProvisionStatus.FAILED.value:
            if provision.current_flow_run_id:
                info = orchestration.retry_run(provision.current_flow_run_id)
                run_id = info.id
            elif provision.stripe_checkout_session_id and provision.paid_at:
                # Paid, but the run never started: queue a start under a new key generation
                # (the first key's run, if any, is gone or failed) and send it after the commit.
                message = outbox.enqueue_restart(db, provision.id)
                run_id = f"queued:{message.key}"
            else:
                flash("This order was never paid, so there is nothing to retry.", "error")
                return back
            db.execute(
                update(Provision)
                .where(
                    Provision.id == provision.id, Provision.status == ProvisionStatus.FAILED.value
                )
                .values(
                    status=ProvisionStatus.PROVISIONING.value,
                    status_reason=None,
                    remedy=None,
                    current_flow_run_id=None if run_id.startswith("queued:") else run_id,
                )
                .execution_options(synchronize_session=False)
            )
            audit(
                db,
                "provision_retried",
                target_type="provision",
                target_id=provision.id,
                details={"flow_run_id": run_id},
            )
        elif upgrade_row is not None and upgrade_row.flow_run_id:
            info = orchestration.retry_run(upgrade_row.flow_run_id)
            upgrade_row.status = UpgradeStatus.PROVISIONING.value
            upgrade_row.status_reason = None
            audit(
                db,
                "upgrade_retried",
                target_type="provision",
                target_id=provision.id,
                details={"upgrade_id": upgrade_row.id, "flow_run_id": info.id},
            )
        else:
            flash("Only a failed provisioning or upgrade can be retried.", "error")
            return back
    except orchestration.OrchestrationError as exc:
        db.rollback()
        outbox_sender.discard_enqueued(db)
        flash(f"Prefect did not accept the retry: {exc}", "error")
        return back
    db.commit()
    outbox_sender.send_committed(db)
    flash("Retry scheduled: the run resumes from its first unfinished step.", "success")
    return back


@bp.post("/provisions/<int:provision_id>/cancel")
@admin_required
def cancel(provision_id: int) -> ResponseReturnValue:
    """Cancel a provision: stop billing in Stripe, then release its vendor resources."""
    form = NoteForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    provision = _provision_or_404(provision_id)
    back = redirect(url_for("admin.provision_detail", provision_id=provision.id), code=303)
    if provision.status == ProvisionStatus.CANCELLED.value:
        # Asked again (e.g. the first release failed): a fresh release run, never the failed one.
        release_again(db, provision.id)
        audit(
            db,
            "provision_release_again",
            target_type="provision",
            target_id=provision.id,
            details={"note": form.note.data or ""},
        )
        db.commit()
        outbox_sender.send_committed(db)
        flash("This order is already cancelled; its resources are being released again.", "info")
        return back
    unpaid = provision.status == ProvisionStatus.PENDING_PAYMENT.value
    try:
        if unpaid:
            if provision.stripe_checkout_session_id:
                billing.expire_checkout(provision.stripe_checkout_session_id)
        else:
            # Stripe first: vendor resources are released only once billing has stopped.
            billing.cancel_subscription(provision)
    except billing.BillingError as exc:
        db.rollback()
        flash(f"Cancelling failed: {exc}", "error")
        return back
    if unpaid:
        db.execute(
            delete(Domain).where(
                Domain.provision_id == provision.id,
                Domain.purchase_state == PurchaseState.SELECTED.value,
            )
        )
    request_cancellation(db, provision.id, reason="Cancelled by an instructor.")
    audit(
        db,
        "provision_cancelled",
        target_type="provision",
        target_id=provision.id,
        details={"note": form.note.data or ""},
    )
    db.commit()
    outbox_sender.send_committed(db)
    flash("Order cancelled: billing stopped and its resources are being released.", "success")
    return back


@bp.post("/provisions/<int:provision_id>/refund")
@admin_required
def refund(provision_id: int) -> ResponseReturnValue:
    """Refund a provision that failed for good (all or part), optionally cancelling it."""
    db = get_db()
    provision = _provision_or_404(provision_id)
    form = RefundForm()
    back = redirect(url_for("admin.provision_detail", provision_id=provision.id), code=303)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return back
    if provision.status not in (ProvisionStatus.FAILED.value, ProvisionStatus.CANCELLED.value):
        flash(
            "Refunds are for orders whose setup failed for good (or that were cancelled).", "error"
        )
        return back
    decision = form.cancel_subscription.data
    if provision.status == ProvisionStatus.CANCELLED.value:
        decision = CANCEL_ORDER  # already cancelled: nothing left to decide
    if decision not in (KEEP_ORDER, CANCEL_ORDER):
        flash(
            "Choose what happens to the order: keep it running or cancel the subscription and the order.",
            "error",
        )
        return back
    amount = getattr(form.amount, "cents", None) if form.amount.data else None
    if amount == 0:
        flash("Enter an amount above zero, or leave it empty for a full refund.", "error")
        return back
    previous = db.scalar(
        select(func.count())
        .select_from(AuditLog)
        .where(
            AuditLog.action == "refund",
            AuditLog.target_type == "provision",
            AuditLog.target_id == provision.id,
        )
    )
    key = f"refund:{provision.id}:{previous}:{amount if amount is not None else 'full'}"
    try:
        result = billing.refund(provision, amount_cents=amount, reason_key=key)
    except billing.BillingError as exc:
        db.rollback()
        flash(exc.student_message, "error")
        return back
    stripe_error = None
    if decision == CANCEL_ORDER and provision.status != ProvisionStatus.CANCELLED.value:
        try:
            billing.cancel_subscription(provision)
        except billing.BillingError as exc:
            # The order is cancelled below anyway; the watchdog cancels a subscription that a
            # cancelled order still has (tasks/watchdog.py), so billing stops either way.
            stripe_error = str(exc)
    audit(
        db,
        "refund",
        target_type="provision",
        target_id=provision.id,
        details={
            "refund_id": result.id,
            "amount_cents": result.amount,
            "reason": form.reason.data,
            "order": decision,
        },
    )
    if decision == CANCEL_ORDER and request_cancellation(
        db, provision.id, reason="Refunded and cancelled."
    ):
        audit(
            db,
            "provision_cancelled",
            target_type="provision",
            target_id=provision.id,
            details={"note": "with refund", "stripe_error": stripe_error},
        )
    db.commit()
    outbox_sender.send_committed(db)
    flash(f"Refunded {format_money(result.amount, result.currency)}.", "success")
    if stripe_error:
        flash(
            f"The order is cancelled, but Stripe did not cancel the subscription yet ({stripe_error}); "
            "it is retried automatically.",
            "warning",
        )
    return back


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


@bp.route("/tiers/new", methods=["GET", "POST"])
@admin_required
def tier_new() -> ResponseReturnValue:
    """Create a package and its Stripe product and prices."""
    db = get_db()
    form = TierForm()
    if form.validate_on_submit():
        top = db.scalar(select(func.max(Tier.sort_order))) or 0
        tier = Tier(
            name=form.name.data.strip(),
            slug=form.slug.data.strip(),
            domain_count=form.domain_count.data,
            mailboxes_per_domain=form.mailboxes_per_domain.data,
            setup_cents=form.setup.cents,
            monthly_cents=form.monthly.cents,
            active=form.active.data,
            sort_order=top + 10,
        )
        db.add(tier)
        try:
            db.flush()
            billing.ensure_tier_prices(tier)
        except IntegrityError:
            db.rollback()
            form.slug.errors.append("Another package already uses this slug.")
            return render_template("admin/tier_form.html", form=form, tier=None), 400
        except billing.BillingError as exc:
            db.rollback()
            flash(f"Stripe did not accept the package: {exc}", "error")
            return render_template("admin/tier_form.html", form=form, tier=None), 502
        audit(
            db, "tier_created", target_type="tier", target_id=tier.id, details=_tier_details(tier)
        )
        db.commit()
        flash(f"Package {tier.name} created.", "success")
        return redirect(url_for("admin.tiers"), code=303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/tier_form.html", form=form, tier=None), status


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
    }


@bp.route("/tiers/<int:tier_id>/edit", methods=["GET", "POST"])
@admin_required
def tier_edit(tier_id: int) -> ResponseReturnValue:
    """Edit a package; a new price replaces the old one in Stripe (prices are immutable)."""
    db = get_db()
    tier = db.get(Tier, tier_id)
    if tier is None:
        abort(404)
    form = TierForm(obj=tier) if request.method == "GET" else TierForm()
    if request.method == "GET":
        form.setup.data = f"{tier.setup_cents / 100:.2f}"
        form.monthly.data = f"{tier.monthly_cents / 100:.2f}"
    if form.validate_on_submit():
        sold = _sold(tier)
        if sold and (
            form.domain_count.data != tier.domain_count
            or form.mailboxes_per_domain.data != tier.mailboxes_per_domain
        ):
            flash(
                "Students already bought this package: its size cannot change. Create a new package instead.",
                "error",
            )
            return render_template("admin/tier_form.html", form=form, tier=tier), 400
        before = _tier_details(tier)
        changed_setup = form.setup.cents != tier.setup_cents
        changed_monthly = form.monthly.cents != tier.monthly_cents
        tier.name = form.name.data.strip()
        tier.slug = form.slug.data.strip()
        tier.domain_count = form.domain_count.data
        tier.mailboxes_per_domain = form.mailboxes_per_domain.data
        tier.setup_cents = form.setup.cents
        tier.monthly_cents = form.monthly.cents
        tier.active = form.active.data
        try:
            db.flush()
            archived = billing.ensure_tier_prices(
                tier, changed_setup=changed_setup, changed_monthly=changed_monthly
            )
        except IntegrityError:
            db.rollback()
            form.slug.errors.append("Another package already uses this slug.")
            return render_template("admin/tier_form.html", form=form, tier=tier), 400
        except billing.BillingError as exc:
            db.rollback()
            flash(f"Stripe did not accept the change: {exc}", "error")
            return render_template("admin/tier_form.html", form=form, tier=tier), 502
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
    status = 400 if request.method == "POST" else 200
    return render_template("admin/tier_form.html", form=form, tier=tier), status


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
