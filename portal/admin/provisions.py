"""A provision's admin page and its actions: retry, cancel and refund (each one audited)."""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from core import outbox
from core.cancellation import release_again
from core.cancellation import request_cancellation
from core.db import utcnow
from core.models import AuditLog
from core.models import Domain
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import Upgrade
from core.models import UpgradeStatus
from core.models import User
from core.pricing import daily_capacity
from core.pricing import format_money
from portal import billing
from portal import orchestration
from portal import outbox_sender
from portal.admin import bp
from portal.admin.cohort import step_log
from portal.admin.forms import CANCEL_ORDER
from portal.admin.forms import KEEP_ORDER
from portal.admin.forms import ConfirmForm
from portal.admin.forms import NoteForm
from portal.admin.forms import RefundForm
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit


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


def _back(provision: Provision) -> Response:
    return redirect(url_for("admin.provision_detail", provision_id=provision.id), code=303)


def _done(db: Session, provision: Provision, message: str, category: str) -> Response:
    """Commit the action, send the runs it queued, and go back to the provision's page."""
    db.commit()
    outbox_sender.send_committed(db)
    flash(message, category)
    return _back(provision)


def _audit(db: Session, provision: Provision, action: str, **details: object) -> None:
    audit(db, action, target_type="provision", target_id=provision.id, details=details)


def _stop_billing(provision: Provision) -> None:
    """Stop Stripe charging for the order: expire an unpaid checkout, else end the subscription."""
    if provision.status == ProvisionStatus.PENDING_PAYMENT.value:
        if provision.stripe_checkout_session_id:
            billing.expire_checkout(provision.stripe_checkout_session_id)
    else:
        billing.cancel_subscription(provision)


def _cancel_order(db: Session, provision: Provision, reason: str, **details: object) -> bool:
    """Mark the order cancelled, queue the release of its resources and audit it (uncommitted).

    Billing must already be stopped (``_stop_billing``). False if the order was already cancelled.
    """
    if provision.status == ProvisionStatus.PENDING_PAYMENT.value:
        # Never bought: the domains it only selected go back to the pool.
        db.execute(
            delete(Domain).where(
                Domain.provision_id == provision.id,
                Domain.purchase_state == PurchaseState.SELECTED.value,
            )
        )
    if not request_cancellation(db, provision.id, reason=reason):
        return False
    _audit(db, provision, "provision_cancelled", **details)
    return True


@bp.get("/provisions/<int:provision_id>")
@admin_required
def provision_detail(provision_id: int) -> ResponseReturnValue:
    """A provision's step log, flow run, vendor ids and the retry / cancel / refund actions."""
    db = get_db()
    provision = _provision_or_404(provision_id)
    steps = list(
        db.scalars(select(ProvisioningStep).where(ProvisioningStep.provision_id == provision.id))
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
        steps=step_log(steps, utcnow()),
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


def _restart_run(db: Session, provision: Provision) -> str | None:
    """Hand a failed provisioning back to Prefect; the run id (or queued key), None if unpaid."""
    if provision.current_flow_run_id:
        return orchestration.retry_run(provision.current_flow_run_id).id
    if provision.stripe_checkout_session_id and provision.paid_at:
        # Paid, but the run never started: queue a start under a new key generation
        # (the first key's run, if any, is gone or failed) and send it after the commit.
        return f"queued:{outbox.enqueue_restart(db, provision.id).key}"
    return None


@bp.post("/provisions/<int:provision_id>/retry")
@admin_required
def retry(provision_id: int) -> ResponseReturnValue:
    """Retry a failed provisioning (or upgrade) run from its last good step."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    provision = _provision_or_404(provision_id)
    upgrade_row = _failed_upgrade(provision)
    try:
        if provision.status == ProvisionStatus.FAILED.value:
            run_id = _restart_run(db, provision)
            if run_id is None:
                flash("This order was never paid, so there is nothing to retry.", "error")
                return _back(provision)
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
            _audit(db, provision, "provision_retried", flow_run_id=run_id)
        elif upgrade_row is not None and upgrade_row.flow_run_id:
            info = orchestration.retry_run(upgrade_row.flow_run_id)
            upgrade_row.status = UpgradeStatus.PROVISIONING.value
            upgrade_row.status_reason = None
            _audit(db, provision, "upgrade_retried", upgrade_id=upgrade_row.id, flow_run_id=info.id)
        else:
            flash("Only a failed provisioning or upgrade can be retried.", "error")
            return _back(provision)
    except orchestration.OrchestrationError as exc:
        db.rollback()
        outbox_sender.discard_enqueued(db)
        flash(f"Prefect did not accept the retry: {exc}", "error")
        return _back(provision)
    return _done(
        db, provision, "Retry scheduled: the run resumes from its first unfinished step.", "success"
    )


@bp.post("/provisions/<int:provision_id>/cancel")
@admin_required
def cancel(provision_id: int) -> ResponseReturnValue:
    """Cancel a provision: stop billing in Stripe, then release its vendor resources."""
    form = NoteForm()
    if not form.validate_on_submit():
        abort(400)
    db = get_db()
    provision = _provision_or_404(provision_id)
    note = form.note.data or ""
    if provision.status == ProvisionStatus.CANCELLED.value:
        # Asked again (e.g. the first release failed): a fresh release run, never the failed one.
        release_again(db, provision.id)
        _audit(db, provision, "provision_release_again", note=note)
        message = "This order is already cancelled; its resources are being released again."
        return _done(db, provision, message, "info")
    try:
        # Stripe first: vendor resources are released only once billing has stopped.
        _stop_billing(provision)
    except billing.BillingError as exc:
        db.rollback()
        flash(f"Cancelling failed: {exc}", "error")
        return _back(provision)
    _cancel_order(db, provision, "Cancelled by an instructor.", note=note)
    message = "Order cancelled: billing stopped and its resources are being released."
    return _done(db, provision, message, "success")


def _refund_refusal(provision: Provision, form: RefundForm) -> str | None:
    """Why this refund request cannot go ahead, or None."""
    if provision.status not in (ProvisionStatus.FAILED.value, ProvisionStatus.CANCELLED.value):
        return "Refunds are for orders whose setup failed for good (or that were cancelled)."
    if (
        provision.status != ProvisionStatus.CANCELLED.value
        and form.cancel_subscription.data
        not in (
            KEEP_ORDER,
            CANCEL_ORDER,
        )
    ):
        return "Choose what happens to the order: keep it running or cancel the subscription and the order."
    if form.amount.data == 0:
        return "Enter an amount above zero, or leave it empty for a full refund."
    return None


@bp.post("/provisions/<int:provision_id>/refund")
@admin_required
def refund(provision_id: int) -> ResponseReturnValue:
    """Refund a provision that failed for good (all or part), optionally cancelling it."""
    db = get_db()
    provision = _provision_or_404(provision_id)
    form = RefundForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return _back(provision)
    refusal = _refund_refusal(provision, form)
    if refusal:
        flash(refusal, "error")
        return _back(provision)
    already_cancelled = provision.status == ProvisionStatus.CANCELLED.value
    # A cancelled order needs no decision: nothing is left to keep running.
    decision = CANCEL_ORDER if already_cancelled else form.cancel_subscription.data
    amount = form.amount.data
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
        return _back(provision)
    _audit(
        db,
        provision,
        "refund",
        refund_id=result.id,
        amount_cents=result.amount,
        reason=form.reason.data,
        order=decision,
    )
    stripe_error = None
    if decision == CANCEL_ORDER and not already_cancelled:
        try:
            _stop_billing(provision)
        except billing.BillingError as exc:
            # The order is cancelled below anyway; the watchdog cancels a subscription that a
            # cancelled order still has (tasks/billing_guard.py), so billing stops either way.
            stripe_error = str(exc)
        _cancel_order(
            db, provision, "Refunded and cancelled.", note="with refund", stripe_error=stripe_error
        )
    response = _done(
        db, provision, f"Refunded {format_money(result.amount, result.currency)}.", "success"
    )
    if stripe_error:
        flash(
            f"The order is cancelled, but Stripe did not cancel the subscription yet ({stripe_error}); "
            "it is retried automatically.",
            "warning",
        )
    return response
