"""The dashboard's website forwarding: the student changes or removes where cold domains forward.

The form stores the wanted website on the provision and, in the same transaction, queues a
``forwarding/on-demand`` run through the outbox; the run (flows/forwarding.py) applies whatever
the provision says when it runs, so quick successive changes end on the last one. Zapmail is
never called from the request.
"""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from core import outbox
from core.db import utcnow
from core.forwarding import WebsiteError
from core.forwarding import clean_website
from core.models import ProvisionStatus
from portal import outbox_sender
from portal.dashboard import bp
from portal.dashboard.scope import own_provision
from portal.db import get_db
from portal.extensions import student_required
from portal.security import audit

FORWARDING_DEPLOYMENT = "forwarding/on-demand"
# A cancelled order's domains lapse at renewal: their forwarding is left as it is.
EDITABLE = {
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.PAST_DUE.value,
    ProvisionStatus.UPGRADING.value,
}


@bp.post("/dashboard/forwarding")
@student_required
def forwarding() -> ResponseReturnValue:
    """Set (``action=save``) or remove (``action=remove``) the website the domains forward to."""
    db = get_db()
    provision = own_provision()
    if provision is None or provision.status not in EDITABLE:
        abort(404)
    back = redirect(url_for("dashboard.overview") + "#website-forwarding", code=303)
    target = None
    if request.form.get("action") != "remove":
        try:
            target = clean_website(request.form.get("website"), [d.name for d in provision.domains])
        except WebsiteError as exc:
            flash(str(exc), "error")
            return back
        if target is None:
            flash("Enter your website's address, or choose Stop forwarding.", "error")
            return back
    if target == provision.forward_to:
        flash("Your domains already forward there." if target else "Nothing forwards.", "info")
        return back
    provision.forward_to = target
    key = f"forwarding:{provision.id}:{int(utcnow().timestamp() * 1000)}"
    outbox.enqueue(
        db,
        key=key,
        deployment=FORWARDING_DEPLOYMENT,
        parameters={"provision_id": provision.id, "request": key},
    )
    audit(db, "forwarding_changed", target_type="provision", target_id=provision.id,
          details={"forward_to": target})  # fmt: skip
    db.commit()
    outbox_sender.send_committed(db)
    flash(
        f"Your domains will forward to {target} within a few minutes."
        if target
        else "Forwarding stops within a few minutes.",
        "success",
    )
    return back
