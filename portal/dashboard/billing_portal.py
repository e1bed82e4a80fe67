"""The Billing button: a redirect into the Stripe customer portal (cancel, update card)."""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue

from portal import billing
from portal.dashboard import bp
from portal.dashboard.scope import own_provision
from portal.extensions import student_required


@bp.post("/billing/portal")
@student_required
def billing_portal() -> ResponseReturnValue:
    """Open the Stripe customer portal (cancel, update card)."""
    provision = own_provision()
    if provision is None or not provision.stripe_customer_id:
        abort(404)
    try:
        url = billing.billing_portal_url(provision.stripe_customer_id)
    except billing.BillingError as exc:
        current_app.logger.warning("billing portal: %s", exc)
        flash(exc.student_message, "error")
        return redirect(url_for("dashboard.overview"), code=303)
    return redirect(url, code=303)
