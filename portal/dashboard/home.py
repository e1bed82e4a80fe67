"""Entry points: the home router that sends everyone to their page, and the liveness probe."""

from __future__ import annotations

from flask import abort
from flask import jsonify
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from core.models import ProvisionStatus
from portal.dashboard import bp
from portal.dashboard.scope import DASHBOARD_STATES
from portal.dashboard.scope import own_provision


@bp.get("/")
def home() -> ResponseReturnValue:
    """Send everyone to the right place: sign-in, admin, wizard, progress or dashboard."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.is_admin:
        return redirect(url_for("admin.cohort"))
    if not current_user.is_student:
        abort(403)
    provision = own_provision()
    if provision is None or provision.status == ProvisionStatus.PENDING_PAYMENT.value:
        return redirect(url_for("wizard.start"))
    if provision.status in DASHBOARD_STATES:
        return redirect(url_for("dashboard.overview"))
    return redirect(url_for("dashboard.progress"))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness probe for the load balancer."""
    return jsonify(status="ok")
