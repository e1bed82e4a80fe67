"""The dashboard's domain health: each cold domain's records, score and advice, and "Check now".

It reads only what the dns-health flow stored (``DomainHealth``, one row per domain and day),
never Zapmail. The overview template includes ``dashboard/_dns.html``, which calls the template
global :func:`domain_health_panel`. "Check now" queues a ``dns-health/on-demand`` run for the
student's provision through the outbox, at most once an hour: the outbox key names the hour, so a
second click within it starts nothing (each check costs two Zapmail calls per domain).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from flask import abort
from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import select

from core import outbox
from core.db import utcnow
from core.dns_health import CRITICAL_SCORE
from core.dns_health import LOW_SCORE
from core.models import Domain
from core.models import DomainHealth
from core.models import OutboxMessage
from core.models import Provision
from core.models import PurchaseState
from portal import outbox_sender
from portal.dashboard import bp
from portal.dashboard.forwarding import EDITABLE
from portal.dashboard.scope import own_provision
from portal.db import get_db
from portal.extensions import student_required

DNS_HEALTH_DEPLOYMENT = "dns-health/on-demand"
STATE_WORDS = {"ok": "OK", "missing": "Missing", "changed": "Changed", "other": "Other record"}


@dataclass
class DomainView:
    """One domain as the panel shows it."""

    name: str
    forwarded_to: str | None
    checked_at: datetime | None = None
    score: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def band(self) -> tuple[str, str]:
        """(badge colour, words) for the score."""
        if self.checked_at is None:
            return "gray", "Not checked yet"
        if self.score is None:
            return "gray", "No score yet"
        if self.score <= CRITICAL_SCORE:
            return "red", f"Critical ({self.score})"
        if self.score < LOW_SCORE:
            return "amber", f"Low ({self.score})"
        return "green", f"Healthy ({self.score})"


@dataclass
class HealthPanel:
    """Every domain of the provision, the forwarding state, and what the student may do."""

    domains: list[DomainView]
    forward_to: str | None
    editable: bool

    @property
    def forwarding_pending(self) -> bool:
        """Whether some domain does not forward where the student asked (yet)."""
        return any(d.forwarded_to != self.forward_to for d in self.domains)

    @property
    def checked_at(self) -> datetime | None:
        """When the latest check ran, if ever."""
        times = [d.checked_at for d in self.domains if d.checked_at is not None]
        return max(times) if times else None


@bp.app_template_global()
def domain_health_panel(provision: Provision) -> HealthPanel:
    """The panel of ``provision``: its bought domains, each with its latest stored check."""
    db = get_db()
    domains = list(
        db.scalars(
            select(Domain)
            .where(
                Domain.provision_id == provision.id,
                Domain.purchase_state == PurchaseState.PURCHASED.value,
                # A replaced domain no longer sends: its records and forwarding no longer matter.
                Domain.retired_at.is_(None),
            )
            .order_by(Domain.id)
        )
    )
    latest = (
        select(DomainHealth.domain_id, func.max(DomainHealth.checked_on).label("day"))
        .where(DomainHealth.domain_id.in_([d.id for d in domains]))
        .group_by(DomainHealth.domain_id)
        .subquery()
    )
    checks = {
        row.domain_id: row
        for row in db.scalars(
            select(DomainHealth).join(
                latest,
                and_(
                    DomainHealth.domain_id == latest.c.domain_id,
                    DomainHealth.checked_on == latest.c.day,
                ),
            )
        )
    }
    views = []
    for domain in domains:
        view = DomainView(domain.name, domain.forwarded_to)
        check = checks.get(domain.id)
        if check is not None:
            view.checked_at, view.score = check.checked_at, check.score
            view.records = [
                {**r, "words": STATE_WORDS.get(r["state"], r["state"])} for r in check.records
            ]
            view.problems = list(check.problems)
        views.append(view)
    return HealthPanel(views, provision.forward_to, provision.status in EDITABLE)


@bp.post("/dashboard/dns/check")
@student_required
def check_dns() -> ResponseReturnValue:
    """Queue a check of the student's domains now (once an hour at most)."""
    db = get_db()
    provision = own_provision()
    if provision is None or provision.status not in EDITABLE:
        abort(404)
    back = redirect(url_for("dashboard.overview") + "#domain-health", code=303)
    key = f"dns-health:{provision.id}:{utcnow():%Y%m%d%H}"
    if db.scalar(select(OutboxMessage.id).where(OutboxMessage.key == key)) is not None:
        flash("Your domains were checked within the hour; the results are below.", "info")
        return back
    outbox.enqueue(
        db, key=key, deployment=DNS_HEALTH_DEPLOYMENT, parameters={"provision_id": provision.id}
    )
    db.commit()
    outbox_sender.send_committed(db)
    flash(
        "Checking your domains' DNS now; the results appear here within a few minutes.", "success"
    )
    return back
