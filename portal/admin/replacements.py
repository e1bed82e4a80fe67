"""Burned domains on a provision's admin page: mark or clear, replace, retry a stopped replacement.

Every action is audited on the provision. The rules are core/replacements.py's: an admin may
replace any live domain (burned or not); who pays follows the tier's allowance as for the
student, and a charged replacement waits for the student to pay it (they are emailed).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort
from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from core import outbox
from core.db import utcnow
from core.domains import DomainNameError
from core.domains import validate_domain
from core.models import Domain
from core.models import DomainReplacement
from core.models import Provision
from core.models import ReplacementStatus
from core.replacements import REPLACEMENT_DEPLOYMENT
from core.replacements import ReplacementRefusedError
from core.replacements import allowance
from core.replacements import burned_reason
from core.replacements import request_replacement
from portal import outbox_sender
from portal.admin import bp
from portal.admin.forms import ConfirmForm
from portal.admin.forms import ReplaceDomainForm
from portal.db import get_db
from portal.extensions import admin_required
from portal.replacement_support import allowance_words
from portal.replacement_support import availability_problem
from portal.replacement_support import price_of
from portal.replacement_support import tell_student_of_admin_request
from portal.security import audit

# Why a domain counts as burned (core.replacements.burned_reason), in an admin's words.
BURNED_WORDS = {
    "admin": "Marked burned by an admin",
    "critical_score": "Critical health score",
    "health_label": "A mailbox's warmup health is burned",
}


@dataclass
class DomainRow:
    """One domain of the provision as the admin's replacement panel shows it."""

    domain: Domain
    burned: str | None
    replacement: DomainReplacement | None


@dataclass
class Panel:
    """The provision's domains with their burned state, its replacements and its allowance."""

    rows: list[DomainRow]
    replacements: list[DomainReplacement]
    allowance: str


@bp.app_template_global()
def replacement_panel(provision: Provision) -> Panel:
    """What the provision page shows about burned domains and replacements."""
    db = get_db()
    replacements = list(
        db.scalars(
            select(DomainReplacement)
            .where(DomainReplacement.provision_id == provision.id)
            .order_by(DomainReplacement.id.desc())
        )
    )
    by_old = {r.old_domain_id: r for r in replacements}
    rows = [
        DomainRow(d, BURNED_WORDS.get(burned_reason(db, d) or ""), by_old.get(d.id))
        for d in sorted(provision.domains, key=lambda d: d.id)
        if d.purchase_state == "purchased"
    ]
    return Panel(rows, replacements, allowance_words(allowance(db, provision)))


def _domain_or_404(domain_id: int) -> Domain:
    domain = get_db().get(Domain, domain_id)
    if domain is None:
        abort(404)
    return domain


def _back(provision_id: int) -> Response:
    return redirect(
        url_for("admin.provision_detail", provision_id=provision_id) + "#replacements", code=303
    )


def _confirmed() -> None:
    if not ConfirmForm().validate_on_submit():
        abort(400)


@bp.post("/domains/<int:domain_id>/burned")
@admin_required
def mark_burned(domain_id: int) -> ResponseReturnValue:
    """Mark a domain burned: its student may then replace it (audited)."""
    _confirmed()
    db = get_db()
    domain = _domain_or_404(domain_id)
    if domain.burned_at is not None:
        flash(f"{domain.name} is already marked burned.", "info")
        return _back(domain.provision_id)
    domain.burned_at = utcnow()
    audit(
        db,
        "domain_marked_burned",
        target_type="provision",
        target_id=domain.provision_id,
        details={"domain_id": domain.id, "domain": domain.name},
    )
    db.commit()
    flash(f"{domain.name} is marked burned; its student can now replace it.", "success")
    return _back(domain.provision_id)


@bp.post("/domains/<int:domain_id>/unburned")
@admin_required
def clear_burned(domain_id: int) -> ResponseReturnValue:
    """Take back a burned mark (a critical health score still counts on its own; audited)."""
    _confirmed()
    db = get_db()
    domain = _domain_or_404(domain_id)
    if domain.burned_at is None:
        flash(f"{domain.name} is not marked burned.", "info")
        return _back(domain.provision_id)
    domain.burned_at = None
    audit(
        db,
        "domain_burned_cleared",
        target_type="provision",
        target_id=domain.provision_id,
        details={"domain_id": domain.id, "domain": domain.name},
    )
    db.commit()
    still = burned_reason(db, domain)
    flash(
        f"Burned mark of {domain.name} cleared."
        + (" Its health score is still critical, so it still counts as burned." if still else ""),
        "success",
    )
    return _back(domain.provision_id)


@bp.post("/domains/<int:domain_id>/replace")
@admin_required
def replace_domain(domain_id: int) -> ResponseReturnValue:
    """Replace any live domain by a new, available name (the student is emailed; audited)."""
    db = get_db()
    domain = _domain_or_404(domain_id)
    provision = domain.provision
    form = ReplaceDomainForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return _back(provision.id)
    try:
        name = validate_domain(form.name.data or "")
    except DomainNameError as exc:
        flash(str(exc), "error")
        return _back(provision.id)
    if name in {d.name for d in provision.domains}:
        flash(f"{name} is already one of this order's domains.", "error")
        return _back(provision.id)
    problem = availability_problem(db, name, provision.user_id)
    if problem:
        flash(f"{name} cannot be bought: {problem}", "error")
        return _back(provision.id)
    try:
        replacement = request_replacement(
            db,
            provision=provision,
            old_domain=domain,
            new_name=name,
            price_cents=price_of(db, name, provision.user_id),
            requested_by_id=current_user.id,
            by_admin=True,
        )
        db.flush()
    except ReplacementRefusedError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _back(provision.id)
    except IntegrityError:
        db.rollback()
        flash(f"{name} was just chosen by a student; pick another domain.", "error")
        return _back(provision.id)
    audit(
        db,
        "domain_replacement_requested",
        target_type="provision",
        target_id=provision.id,
        details={
            "replacement_id": replacement.id,
            "old": domain.name,
            "new": name,
            "payment": replacement.payment,
        },
    )
    tell_student_of_admin_request(db, replacement)
    db.commit()
    outbox_sender.send_committed(db)
    if replacement.status == ReplacementStatus.PROVISIONING.value:
        flash(f"Replacing {domain.name} with {name}: the run is starting.", "success")
    else:
        flash(
            f"Replacement of {domain.name} by {name} recorded. The included replacements are "
            "used, so it starts once the student pays the fee (they have been emailed).",
            "warning",
        )
    return _back(provision.id)


@bp.post("/replacements/<int:replacement_id>/retry")
@admin_required
def retry_replacement(replacement_id: int) -> ResponseReturnValue:
    """Start a stopped replacement again: a new run that resumes from its first unfinished step."""
    _confirmed()
    db = get_db()
    replacement = db.get(DomainReplacement, replacement_id)
    if replacement is None:
        abort(404)
    # Compare-and-set: two clicks (or admins) start one run.
    won = db.execute(
        update(DomainReplacement)
        .where(
            DomainReplacement.id == replacement.id,
            DomainReplacement.status == ReplacementStatus.FAILED.value,
        )
        # Forget the failed run: until the new one starts, the watchdog judges the replacement
        # by the queued start (skipped) or the last start sent, never by the failed run.
        .values(status=ReplacementStatus.PROVISIONING.value, status_reason=None, flow_run_id=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.rollback()
        flash("Only a stopped (failed) replacement can be retried.", "error")
        return _back(replacement.provision_id)
    # A new key generation: the first run's key would only return that failed run.
    message = outbox.enqueue_generation(
        db,
        prefix=f"restart:replacement:{replacement.id}",
        deployment=REPLACEMENT_DEPLOYMENT,
        parameters={"replacement_id": replacement.id},
    )
    audit(
        db,
        "replacement_retried",
        target_type="provision",
        target_id=replacement.provision_id,
        details={"replacement_id": replacement.id, "key": message.key},
    )
    db.commit()
    outbox_sender.send_committed(db)
    flash("Retry scheduled: the replacement resumes from its first unfinished step.", "success")
    return _back(replacement.provision_id)
