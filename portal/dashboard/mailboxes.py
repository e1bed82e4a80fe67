"""The student's sending logins: one mailbox's warmup history, and the PlusVibe password reveal."""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.crypto import SecretBox
from core.crypto import SecretBoxError
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from portal import insights
from portal.charts import LARGE
from portal.dashboard import bp
from portal.dashboard.overview import render_dashboard
from portal.dashboard.scope import DASHBOARD_STATES
from portal.db import get_db
from portal.extensions import student_required
from portal.security import audit


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
        box,
        (domain.status or "").upper() == "ACTIVE" and bool(domain.dmarc_email),
        utcnow().date(),
        insights.warmup_since(domain.provision, domain),
        frame=LARGE,
    )
    history = sorted(box.snapshots, key=lambda s: s.day, reverse=True)[: insights.HISTORY_DAYS]
    return render_template(
        "dashboard/mailbox.html",
        box=box,
        view=view,
        history=history,
        sync_interval_s=insights.WARMUP_SYNC_INTERVAL_S,
    )


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
    return render_dashboard(provision, password=secret.get_secret_value())
