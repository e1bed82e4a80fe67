"""Replacing a burned domain: pick the new domain, confirm, pay when it is not included.

The rules (burned or not, included or charged, one replacement per domain) are
core/replacements.py's; this module shows them, picks the new name with the wizard's picker
(live availability and price, brand suggestions) and re-checks it before recording the request.
A charged replacement is recorded before its invoice is paid, so a crash after the charge leaves
a row that the ``invoice.paid`` webhook can complete; only a paid invoice starts its run.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from core.health import MIN_WARMUP_DAYS
from core.models import Domain
from core.models import DomainReplacement
from core.models import Provision
from core.models import ReplacementStatus
from core.replacements import REPLACEABLE_PROVISION
from core.replacements import ReplacementRefusedError
from core.replacements import allowance
from core.replacements import burned_reason
from core.replacements import mark_paid
from core.replacements import refusal
from core.replacements import replacement_of
from core.replacements import request_replacement
from core.replacements import withdraw
from portal import drafts
from portal import outbox_sender
from portal.billing import BillingError
from portal.dashboard import bp
from portal.dashboard.forms import ReplaceForm
from portal.dashboard.forms import RetryPaymentForm
from portal.db import get_db
from portal.domain_picker import Picker
from portal.extensions import student_required
from portal.replacement_billing import charge_replacement
from portal.replacement_billing import void_unpaid_invoice
from portal.replacement_support import BURNED_WORDS
from portal.replacement_support import allowance_words
from portal.replacement_support import availability_problem
from portal.wizard import domain_step


def _own_domain(domain_id: int) -> tuple[Provision, Domain]:
    """The student's provision and its domain ``domain_id``; 404 for anyone else's (M4)."""
    db = get_db()
    domain = db.scalar(
        select(Domain)
        .join(Provision)
        .where(Domain.id == domain_id, Provision.user_id == current_user.id)
    )
    if domain is None:
        abort(404)
    return domain.provision, domain


def own_replacement(replacement_id: int) -> DomainReplacement:
    """The student's replacement ``replacement_id``; 404 for anyone else's (M4)."""
    replacement = get_db().scalar(
        select(DomainReplacement)
        .join(Provision, Provision.id == DomainReplacement.provision_id)
        .where(DomainReplacement.id == replacement_id, Provision.user_id == current_user.id)
    )
    if replacement is None:
        abort(404)
    return replacement


def _picker(provision: Provision, domain: Domain) -> Picker:
    """The picker of one new domain, on the replacement draft of ``domain``."""
    draft = drafts.load(get_db(), current_user.id, drafts.REPLACEMENT)
    if draft["domain_id"] != domain.id:
        # A draft for another domain: keep the suggestions, not the choice.
        draft.update(domain_id=domain.id, domains=[])
    # Every name the order ever held counts as the student's own: none can be picked again.
    owned = frozenset(d.name for d in provision.domains)
    return Picker(get_db(), draft, 1, current_user.id, owned)


def _progress(replacement: DomainReplacement) -> Response:
    return redirect(url_for("dashboard.replacement", replacement_id=replacement.id), code=303)


def _context(provision: Provision, domain: Domain) -> dict[str, Any]:
    db = get_db()
    budget = allowance(db, provision)
    return {
        "provision": provision,
        "domain": domain,
        "burned": BURNED_WORDS.get(burned_reason(db, domain) or ""),
        "allowance": budget,
        "allowance_words": allowance_words(budget),
        "charged": budget.remaining == 0 and budget.fee_cents > 0,
        "warmup_days": MIN_WARMUP_DAYS,
    }


@bp.route("/dashboard/domains/<int:domain_id>/replace", methods=["GET", "POST"])
@student_required
def replace_domain(domain_id: int) -> ResponseReturnValue:
    """Explain the replacement of a burned domain and pick its successor (live availability)."""
    db = get_db()
    provision, domain = _own_domain(domain_id)
    existing = replacement_of(db, domain)
    if existing is not None:
        return _progress(existing)
    refused = refusal(db, provision, domain)
    picker = _picker(provision, domain)
    if request.method == "POST":
        if refused:
            flash(refused, "error")
            return redirect(url_for("dashboard.replace_domain", domain_id=domain.id), code=303)
        return domain_step.post(
            picker,
            drafts.REPLACEMENT,
            here="dashboard.replace_domain",
            back="dashboard.overview",
            forward="dashboard.confirm_replacement",
            args={"domain_id": domain.id},
        )
    return render_template(
        "dashboard/replace.html",
        **_context(provision, domain),
        refusal=refused,
        draft=picker.draft,
        results=picker.results() if not refused else {},
        post_url=url_for("dashboard.replace_domain", domain_id=domain.id),
        paused_s=0,
        required=1,
    )


@bp.route("/dashboard/domains/<int:domain_id>/replace/confirm", methods=["GET", "POST"])
@student_required
def confirm_replacement(domain_id: int) -> ResponseReturnValue:
    """Review the replacement (what happens, who pays) and confirm it."""
    db = get_db()
    provision, domain = _own_domain(domain_id)
    here = url_for("dashboard.replace_domain", domain_id=domain.id)
    existing = replacement_of(db, domain)
    if existing is not None:
        return _progress(existing)
    picker = _picker(provision, domain)
    refused = refusal(db, provision, domain)
    if refused:
        if request.method == "POST":
            flash(refused, "error")
        return redirect(here, code=303)
    # A POST says why the choice no longer stands (taken meanwhile, say); a GET just goes back.
    if not picker.ready(report=request.method == "POST"):
        return redirect(here, code=303)
    new_name = picker.draft["domains"][0]
    if request.method == "GET":
        return render_template(
            "dashboard/replace_confirm.html",
            **_context(provision, domain),
            form=ReplaceForm(new_domain=new_name),
            new_name=new_name,
            price_cents=picker.results()[new_name].price_cents,
        )
    # The name the page showed must still be the draft's choice (another tab may have changed it).
    form = ReplaceForm()
    if not form.validate_on_submit() or form.new_domain.data != new_name:
        flash(
            "Your choice changed in another tab: check the new domain and confirm again.", "error"
        )
        return redirect(url_for("dashboard.confirm_replacement", domain_id=domain.id), code=303)
    problem = availability_problem(db, new_name, current_user.id)
    if problem:
        flash(f"{new_name} can no longer be bought ({problem}). Pick another domain.", "error")
        return redirect(here, code=303)
    price = picker.results()[new_name].price_cents
    try:
        replacement = request_replacement(
            db,
            provision=provision,
            old_domain=domain,
            new_name=new_name,
            price_cents=price,
            requested_by_id=current_user.id,
        )
        db.flush()
    except ReplacementRefusedError as exc:
        db.rollback()
        again = replacement_of(db, domain)
        if again is not None:
            # Another tab asked first: show that request rather than a refusal.
            return _progress(again)
        flash(str(exc), "error")
        return redirect(here, code=303)
    except IntegrityError:
        db.rollback()
        flash(f"{new_name} was just chosen by another student. Pick another domain.", "error")
        return redirect(here, code=303)
    # The choice now lives in the replacement row.
    drafts.clear(db, current_user.id, drafts.REPLACEMENT)
    # Recorded before any charge: a crash after it leaves a row the webhook can complete.
    db.commit()
    if replacement.status == ReplacementStatus.PROVISIONING.value:
        outbox_sender.send_committed(db)
        flash(
            f"Replacing {domain.name} with {new_name}: your new domain is being set up.", "success"
        )
        return _progress(replacement)
    return _pay(replacement, provision)


@bp.post("/dashboard/replacements/<int:replacement_id>/pay")
@student_required
def pay_replacement(replacement_id: int) -> ResponseReturnValue:
    """Try a declined (or unconfirmed) replacement payment again."""
    replacement = own_replacement(replacement_id)
    form = RetryPaymentForm()
    if not form.validate_on_submit():
        abort(400)
    if (
        replacement.status != ReplacementStatus.PENDING_PAYMENT.value
        or replacement.payment != "charged"
    ):
        flash("This replacement has nothing left to pay.", "info")
        return _progress(replacement)
    if replacement.provision.status not in REPLACEABLE_PROVISION:
        # Never charge for a replacement the order can no longer receive (cancelled, past due).
        flash("A replacement can be paid only while your account is active.", "error")
        return _progress(replacement)
    return _pay(replacement, replacement.provision)


@bp.post("/dashboard/replacements/<int:replacement_id>/withdraw")
@student_required
def withdraw_replacement(replacement_id: int) -> ResponseReturnValue:
    """Withdraw an unpaid replacement: its invoice is voided first, so it can never be paid."""
    replacement = own_replacement(replacement_id)
    if not RetryPaymentForm().validate_on_submit():
        abort(400)
    if replacement.status != ReplacementStatus.PENDING_PAYMENT.value:
        flash("This replacement is paid for and under way; it can no longer be withdrawn.", "info")
        return _progress(replacement)
    db = get_db()
    old_name = replacement.old_domain.name
    try:
        voided = void_unpaid_invoice(replacement)
    except BillingError as exc:
        current_app.logger.warning("replacement %s not withdrawn: %s", replacement.id, exc)
        flash(
            "We could not reach our payment provider; nothing changed. Try again shortly.", "error"
        )
        return _progress(replacement)
    if not voided:
        # The payment won the race: the replacement goes ahead as paid.
        if mark_paid(db, replacement, str(replacement.stripe_invoice_id)) == "replacement_started":
            db.commit()
            outbox_sender.send_committed(db)
        flash("Your payment had already gone through: the replacement goes ahead.", "info")
        return _progress(replacement)
    if not withdraw(db, replacement):
        db.rollback()
        flash("This replacement is paid for and under way; it can no longer be withdrawn.", "info")
        return _progress(replacement)
    db.commit()
    flash(f"Request withdrawn: {old_name} stays as it is and nothing was charged.", "success")
    return redirect(url_for("dashboard.overview"))


def _pay(replacement: DomainReplacement, provision: Provision) -> Response:
    """Charge the replacement's fee; once Stripe says it is paid, queue its run (at most once)."""
    db = get_db()
    try:
        charge = charge_replacement(replacement, provision)
    except BillingError as exc:
        current_app.logger.warning("replacement %s payment failed: %s", replacement.id, exc)
        # Only while still unpaid: a webhook may have completed it meanwhile.
        db.execute(
            update(DomainReplacement)
            .where(
                DomainReplacement.id == replacement.id,
                DomainReplacement.status == ReplacementStatus.PENDING_PAYMENT.value,
            )
            .values(status_reason=exc.student_message)
            .execution_options(synchronize_session=False)
        )
        db.commit()
        flash(exc.student_message, "error")
        return _progress(replacement)
    # Keep the invoice id even if the start below fails: paying again is then a no-op.
    db.commit()
    if not charge.paid:
        flash("Your payment is being confirmed; the replacement starts as soon as it is.", "info")
        return _progress(replacement)
    if mark_paid(db, replacement, charge.invoice_id) == "unknown_replacement":
        # Paid on another invoice than the one recorded: never start on it (logged for the operator).
        current_app.logger.error(
            "replacement %s paid on unexpected invoice %s", replacement.id, charge.invoice_id
        )
        db.rollback()
        flash(
            "Your payment could not be matched to this replacement; contact your instructor.",
            "error",
        )
        return _progress(replacement)
    db.commit()
    outbox_sender.send_committed(db)
    flash("Paid: your new domain is being set up.", "success")
    return _progress(replacement)
