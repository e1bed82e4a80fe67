"""Step 4 of the wizard and the way back from Stripe: review, pay through Checkout, success.

Prices are computed on the server at the review step; the provision row is created (pending
payment) only when the student clicks Pay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db import utcnow
from core.forwarding import website_or_none
from core.mailboxes import validate_sender_name
from core.models import Domain
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import Tier
from core.models import User
from core.pricing import daily_capacity
from core.pricing import quote_order
from portal import billing
from portal import drafts
from portal import fulfilment
from portal import orders
from portal import outbox_sender
from portal.availability import service_for
from portal.db import get_db
from portal.extensions import student_required
from portal.wizard import bp
from portal.wizard import state

# What the way back from Stripe says, by where the paid order stands when it is opened.
SUCCESS_WORDS = {
    ProvisionStatus.PROVISIONING.value: (
        "Thank you! Your payment was received and setup has started.",
        "success",
    ),
    ProvisionStatus.ACTIVE.value: ("This order is paid and everything is set up.", "info"),
    ProvisionStatus.UPGRADING.value: (
        "This order is paid and set up; an upgrade is under way.",
        "info",
    ),
    ProvisionStatus.PAST_DUE.value: ("This order is set up; its latest payment failed.", "warning"),
    ProvisionStatus.FAILED.value: (
        "Your payment was received; setup stopped and is being looked at.",
        "warning",
    ),
}


@bp.route("/review", methods=["GET", "POST"])
@student_required
def review() -> ResponseReturnValue:
    """Step 4: the order and its server-computed price; Pay opens Stripe Checkout."""
    closed = state.closed()
    if closed is not None:
        return closed
    db = get_db()
    draft = state.load()
    if request.method == "GET" and request.args.get("cancelled"):
        # Back from Checkout without paying: the next Pay opens a fresh session.
        provision = state.provision()
        if provision is not None and provision.stripe_checkout_session_id:
            billing.expire_checkout(provision.stripe_checkout_session_id)
        draft["checkout_attempt"] = int(draft["checkout_attempt"]) + 1
        state.save(draft)
        flash("Payment cancelled. Nothing was charged; your choices are kept.", "info")
        return redirect(url_for("wizard.review"))
    guard = state.guard("review", draft)
    if guard is not None:
        return guard
    tier = state.chosen_tier(draft)
    assert tier is not None
    name = validate_sender_name(draft["first_name"], draft["last_name"])
    context = {
        "tier": tier,
        "quote": quote_order(tier),
        "preview": state.preview(draft),
        "results": state.picker(draft, tier).results(),
        "capacity": daily_capacity(tier),
        "provision": state.provision(),
    }
    if request.method == "GET":
        return state.page("wizard/review.html", "review", draft, **context)
    try:
        return _pay(draft, tier, name.first, name.last)
    except billing.BillingError as exc:
        db.rollback()
        current_app.logger.warning("checkout failed: %s", exc)
        flash(exc.student_message, "error")
        return state.page("wizard/review.html", "review", draft, **context), 502


def _refresh_availability(names: list[str]) -> list[str]:
    """Re-confirm the chosen names before paying; return the ones that can no longer be bought."""
    service = service_for(get_db(), current_app.config, current_app.extensions["settings"])
    outcome = service.check(names, user_id=current_user.id)
    # When the budget is spent a recent-enough "available" still counts: the purchase step
    # re-checks every name before buying anyway.
    max_age = timedelta(seconds=int(current_app.config["CHECKOUT_MAX_CHECK_AGE_S"]))
    now = utcnow()
    bad = []
    for name in names:
        result = outcome.results[name]
        if not result.selectable:
            bad.append(f"{name} ({result.reason})")
        elif result.checked_at is None or now - result.checked_at > max_age:
            bad.append(f"{name} (its availability could not be confirmed; try again shortly)")
    return bad


def _pay(draft: dict[str, Any], tier: Tier, first: str, last: str) -> ResponseReturnValue:
    db = get_db()
    names = list(draft["domains"])
    bad = _refresh_availability(names)
    if bad:
        flash("Some domains can no longer be bought: " + "; ".join(bad) + ". Pick others.", "error")
        return redirect(url_for("wizard.domains"))
    # Prices live in Stripe per tier; create them on first use (committed on their own: they are
    # valid whatever happens to this order).
    if tier.stripe_monthly_price_id is None or (
        tier.setup_cents and tier.stripe_setup_price_id is None
    ):
        billing.ensure_tier_prices(tier)
        db.commit()
    user = db.get(User, current_user.id)
    assert user is not None
    provision = _locked_provision()
    if provision is not None and provision.status != ProvisionStatus.PENDING_PAYMENT.value:
        # Paid meanwhile (another tab): this order can no longer change.
        db.rollback()
        return redirect(url_for("dashboard.home"))
    previous_session = provision.stripe_checkout_session_id if provision else None
    previous = billing.retrieve_checkout(previous_session) if previous_session else None
    if (
        previous is not None
        and previous.status == "complete"
        and provision is not None
        and provision.status_reason != fulfilment.PAYMENT_FAILED_REASON
    ):
        # Completed but unpaid: a bank payment is in flight. A second checkout could charge twice.
        db.rollback()
        flash("Your payment is already being processed; setup starts as soon as it clears.", "info")
        return redirect(url_for("dashboard.progress"))
    if (
        provision is not None
        and previous is not None
        and previous.status == "open"
        and previous.url
    ):
        current = orders.latest_open(db, provision.id)
        if (
            current is not None
            and current.checkout_session_id == previous.id
            and orders.sells(current, tier, names, first, last, list(draft["patterns"]))
        ):
            # The same order is still payable: reuse its session rather than open a second one.
            db.rollback()
            return redirect(previous.url, code=303)
    if previous is not None and previous.status != "open":
        # That session can no longer be paid: the next one needs a fresh idempotency key.
        draft["checkout_attempt"] = int(draft["checkout_attempt"]) + 1
        drafts.save(db, current_user.id, drafts.ORDER, draft)
    if provision is None:
        provision = Provision(user_id=user.id, tier_id=tier.id)
        db.add(provision)
    provision.tier_id = tier.id
    provision.sender_first_name = first
    provision.sender_last_name = last
    provision.username_patterns = list(draft["patterns"])
    provision.forward_to = website_or_none(draft["forward_to"], names)
    provision.status_reason = None
    # Unpaid names are only held while this order awaits payment: replace them with the new choice.
    if provision.id is not None:
        db.execute(
            delete(Domain).where(
                Domain.provision_id == provision.id,
                Domain.purchase_state == PurchaseState.SELECTED.value,
            )
        )
    try:
        db.flush()
        results = state.picker(draft, tier).results()
        for name in names:
            db.add(
                Domain(provision_id=provision.id, name=name, price_cents=results[name].price_cents)
            )
        db.flush()
    except IntegrityError:
        db.rollback()
        flash(
            "One of your domains was just chosen by another student. Pick another one; the rest of your choices are kept.",
            "error",
        )
        return redirect(url_for("wizard.domains"))
    # What this session sells, frozen in the transaction that records the session; older open
    # snapshots become superseded, so a late payment of theirs is refunded, never provisioned.
    snapshot = orders.new_snapshot(db, provision, tier, names, first, last, list(draft["patterns"]))
    checkout = billing.create_checkout(
        provision, tier, user, attempt=int(draft["checkout_attempt"]), order_id=snapshot.id
    )
    snapshot.checkout_session_id = checkout.id
    provision.stripe_checkout_session_id = checkout.id
    db.commit()
    if previous_session and previous_session != checkout.id:
        billing.expire_checkout(previous_session)
    return redirect(checkout.url, code=303)


def _locked_provision() -> Provision | None:
    """The student's provision, row-locked until the commit (PostgreSQL; SQLite locks on write).

    Checkout fulfilment moves it out of pending_payment under the same lock, so an order can no
    longer change once a payment has won.
    """
    return get_db().scalar(
        select(Provision)
        .where(Provision.user_id == current_user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


@bp.get("/success")
@student_required
def success() -> ResponseReturnValue:
    """Back from Checkout: confirm the payment now if Stripe says so (the webhook does it too)."""
    session_id = request.args.get("session_id", "")
    db = get_db()
    provision = state.provision()
    snapshot = orders.for_session(db, session_id) if session_id else None
    legacy = provision is not None and provision.stripe_checkout_session_id == session_id
    if (
        provision is None
        or not session_id
        or (not legacy and (snapshot is None or snapshot.provision_id != provision.id))
    ):
        abort(404)
    try:
        checkout = fulfilment.read_checkout(session_id)
        db.rollback()  # read nothing under a transaction while Stripe answers
        if checkout is not None:
            fulfilment.fulfil_checkout(db, checkout)
            db.commit()
            # The run (or refund) it decided starts after the commit, off this request.
            outbox_sender.send_committed(db)
    except (billing.BillingError, IntegrityError) as exc:
        # The webhook will confirm it; the progress page shows "waiting for payment".
        db.rollback()
        outbox_sender.discard_enqueued(db)
        current_app.logger.warning("success page could not confirm %s: %s", session_id, exc)
    snapshot = orders.for_session(db, session_id)
    if snapshot is not None and snapshot.decision_reason:
        flash(snapshot.decision_reason, "error")
        return redirect(url_for("dashboard.progress"))
    status = db.scalar(select(Provision.status).where(Provision.id == provision.id))
    if status == ProvisionStatus.PENDING_PAYMENT.value:
        flash("Thank you! We are waiting for your payment to be confirmed.", "info")
        return redirect(url_for("dashboard.progress"))
    drafts.clear(db, current_user.id, drafts.ORDER)
    db.commit()
    # This page may be opened again later (history, a bookmark): say where the order is now.
    words = SUCCESS_WORDS.get(status or "")
    if words:
        flash(*words)
    return redirect(url_for("dashboard.home"))
