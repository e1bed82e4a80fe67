"""The dashboard page (domains, mailboxes, warmup, readiness) and its refresh-numbers button."""

from __future__ import annotations

from datetime import timedelta

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from core import outbox
from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pricing import daily_capacity
from portal import insights
from portal import orchestration
from portal import outbox_sender
from portal.dashboard import bp
from portal.dashboard.scope import DASHBOARD_STATES
from portal.dashboard.scope import own_provision
from portal.db import get_db
from portal.extensions import student_required

# Upgrades the dashboard reports instead of offering a new one: awaiting payment, being set up,
# or paid and stopped (an admin retries those; the student keeps their current package).
UNFINISHED_UPGRADES = [
    UpgradeStatus.PENDING_PAYMENT.value,
    UpgradeStatus.PROVISIONING.value,
    UpgradeStatus.FAILED.value,
]


@bp.get("/dashboard")
@student_required
def overview() -> ResponseReturnValue:
    """The dashboard: domains, mailboxes, warmup charts, readiness, HeyReach and PlusVibe."""
    provision = insights.load_provision(get_db(), current_user.id)
    if provision is None:
        return redirect(url_for("wizard.start"))
    if provision.status not in DASHBOARD_STATES:
        return redirect(url_for("dashboard.progress"))
    return render_dashboard(provision)


def render_dashboard(provision: Provision, *, password: str | None = None) -> str:
    """The dashboard page of ``provision``, showing the PlusVibe ``password`` when given."""
    cooldown = int(current_app.config["REFRESH_COOLDOWN_S"])
    last = provision.last_refresh_requested_at
    wait = 0
    if last is not None:
        wait = max(0, int(cooldown - (utcnow() - last).total_seconds()))
    pending_upgrade = get_db().scalar(
        select(Upgrade)
        .where(
            Upgrade.provision_id == provision.id,
            Upgrade.status.in_(UNFINISHED_UPGRADES),
        )
        .order_by(Upgrade.id.desc())
        .limit(1)
    )
    larger = get_db().scalar(
        select(Tier.id)
        .where(Tier.active.is_(True), Tier.domain_count > provision.tier.domain_count)
        .limit(1)
    )
    return render_template(
        "dashboard/overview.html",
        provision=provision,
        tier=provision.tier,
        data=insights.dashboard(provision),
        capacity=daily_capacity(provision.tier),
        password=password,
        refresh_wait_s=wait,
        pending_upgrade=pending_upgrade,
        can_upgrade=larger is not None and provision.status == ProvisionStatus.ACTIVE.value,
    )


@bp.post("/dashboard/refresh")
@student_required
def refresh() -> ResponseReturnValue:
    """Start the refresh-dashboard flow, at most once per cooldown per student."""
    db = get_db()
    provision = own_provision()
    if provision is None or provision.status not in DASHBOARD_STATES:
        abort(404)
    cooldown = int(current_app.config["REFRESH_COOLDOWN_S"])
    now = utcnow()
    # Conditional UPDATE: two clicks (or tabs) cannot both start a run.
    won = db.execute(
        update(Provision)
        .where(
            Provision.id == provision.id,
            or_(
                Provision.last_refresh_requested_at.is_(None),
                Provision.last_refresh_requested_at <= now - timedelta(seconds=cooldown),
            ),
        )
        .values(last_refresh_requested_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.rollback()
        wait = cooldown
        if provision.last_refresh_requested_at is not None:
            wait = max(
                1, int(cooldown - (now - provision.last_refresh_requested_at).total_seconds())
            )
        flash(
            f"Numbers were refreshed recently; you can refresh again in {max(1, round(wait / 60))} min.",
            "warning",
        )
        return redirect(url_for("dashboard.overview"), code=303)
    # Started after the commit by the outbox sender (never while this transaction is open).
    outbox.enqueue(
        db,
        key=f"refresh:{provision.id}:{int(now.timestamp())}",
        deployment=orchestration.REFRESH_DEPLOYMENT,
        parameters={"provision_id": provision.id},
    )
    db.commit()
    outbox_sender.send_committed(db)
    flash("Refreshing your numbers from the providers; this takes a minute or two.", "success")
    return redirect(url_for("dashboard.overview"), code=303)
