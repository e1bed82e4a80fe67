"""Admin actions on a student's account: sign them out everywhere (a lost laptop, a shared one)."""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from core.models import Provision
from portal.admin import bp
from portal.auth import revoke_all_sessions
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit


@bp.post("/provisions/<int:provision_id>/sign-out-everywhere")
@admin_required
def sign_out_everywhere(provision_id: int) -> ResponseReturnValue:
    """End every session of the order's student at once; audited with the count."""
    db = get_db()
    provision = db.get(Provision, provision_id)
    if provision is None:
        abort(404)
    student_id = provision.user_id
    # Read before any write: loading the admin may touch their own session row.
    admin_id = current_user.id
    row = audit(
        db,
        "sessions_revoked",
        target_type="user",
        target_id=student_id,
        actor=admin_id,
        details={"provision_id": provision_id},
    )
    # Commits the audit row above in the same transaction as the revocation.
    ended = revoke_all_sessions(student_id, "admin")
    row.details = {**row.details, "sessions_ended": ended}
    db.commit()
    flash(
        f"Signed {provision.user.email} out everywhere "
        f"({ended} session{'s' if ended != 1 else ''} ended).",
        "success",
    )
    return redirect(url_for("admin.provision_detail", provision_id=provision_id), code=303)
