"""The upgrade's three steps: choose a larger package, pick the extra domains, review and pay.

Only an active provision without a stopped paid upgrade may upgrade; the upgrade is paid before
anything changes (portal/upgrade/payment.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from core.models import Provision
from core.models import ProvisionStatus
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pricing import PricingError
from core.pricing import UpgradeQuote
from core.pricing import quote_upgrade
from portal import drafts
from portal.dashboard.scope import own_provision
from portal.db import get_db
from portal.domain_picker import Picker
from portal.extensions import student_required
from portal.upgrade import bp
from portal.upgrade.forms import UpgradeForm
from portal.upgrade.payment import pay
from portal.wizard import domain_step
from portal.wizard.forms import posted


def _upgradable() -> Provision:
    """The student's provision if it may upgrade now, else 404."""
    provision = own_provision(with_tier=True)
    if provision is None or provision.status != ProvisionStatus.ACTIVE.value:
        abort(404)
    # A paid upgrade that stopped is retried by us; a second one bought meanwhile would start
    # from the wrong tier and sit paid and unfulfilled.
    stalled = get_db().scalar(
        select(Upgrade.id).where(
            Upgrade.provision_id == provision.id,
            Upgrade.status.in_([UpgradeStatus.PROVISIONING.value, UpgradeStatus.FAILED.value]),
        )
    )
    if stalled is not None:
        abort(404)
    return provision


def _draft() -> dict[str, Any]:
    return drafts.load(get_db(), current_user.id, drafts.UPGRADE)


@dataclass
class Plan:
    """An upgrade being chosen: the provision, its draft, the larger package and its price."""

    provision: Provision
    draft: dict[str, Any]
    tier: Tier
    quote: UpgradeQuote

    def context(self) -> dict[str, Any]:
        """What the domain and review pages show of the upgrade."""
        return {
            "provision": self.provision,
            "tier": self.tier,
            "quote": self.quote,
            "draft": self.draft,
        }

    def picker(self) -> Picker:
        """The domain step for the extra domains (the student's own names count as taken)."""
        owned = frozenset(d.name for d in self.provision.domains)
        return Picker(get_db(), self.draft, self.quote.extra_domains, current_user.id, owned)


def _plan() -> Plan | None:
    """The upgrade the draft describes, or None until a package on offer is chosen.

    Answers 404 when the student may not upgrade at all.
    """
    provision = _upgradable()
    draft = _draft()
    if draft["to_tier_id"] is None:
        return None
    tier = get_db().get(Tier, draft["to_tier_id"])
    if tier is None or not tier.active:
        return None
    try:
        return Plan(provision, draft, tier, quote_upgrade(provision.tier, tier))
    except PricingError:
        return None


@bp.route("", methods=["GET", "POST"])
@student_required
def start() -> ResponseReturnValue:
    """Choose a larger package; the upgrade is paid before anything changes."""
    db = get_db()
    provision = _upgradable()
    tiers = list(
        db.scalars(
            select(Tier)
            .where(Tier.active.is_(True), Tier.domain_count > provision.tier.domain_count)
            .order_by(Tier.sort_order, Tier.id)
        )
    )
    quotes = {}
    for tier in tiers:
        try:
            quotes[tier.id] = quote_upgrade(provision.tier, tier)
        except PricingError:
            continue
    draft = _draft()
    form = posted(UpgradeForm, tier_id=str(draft["to_tier_id"] or ""))
    form.offer([tier for tier in tiers if tier.id in quotes])
    if request.method == "POST" and form.validate():
        if draft["to_tier_id"] != form.chosen:
            draft["to_tier_id"] = form.chosen
            # A different package needs a different number of extra domains: keep the choices
            # but cut them to the new count.
            draft["domains"] = draft["domains"][: quotes[form.chosen].extra_domains]
        drafts.save(db, current_user.id, drafts.UPGRADE, draft)
        db.commit()
        return redirect(url_for("upgrade.domains"))
    page = render_template(
        "upgrade/start.html", provision=provision, tiers=tiers, quotes=quotes, form=form
    )
    # A POST that gets here was refused: nothing was saved, the reason stands above the cards.
    return (page, 400) if request.method == "POST" else page


@bp.route("/domains", methods=["GET", "POST"])
@student_required
def domains() -> ResponseReturnValue:
    """Pick the extra domains the upgrade adds (same availability rules as the wizard)."""
    plan = _plan()
    if plan is None:
        return redirect(url_for("upgrade.start"))
    picker = plan.picker()
    if request.method == "POST":
        return domain_step.post(
            picker,
            drafts.UPGRADE,
            here="upgrade.domains",
            back="upgrade.start",
            forward="upgrade.review",
        )
    return render_template(
        "upgrade/domains.html",
        **plan.context(),
        results=picker.results(),
        post_url=url_for("upgrade.domains"),
        paused_s=0,
        required=plan.quote.extra_domains,
    )


@bp.route("/review", methods=["GET", "POST"])
@student_required
def review() -> ResponseReturnValue:
    """Review the upgrade's price and pay: proration now plus the extra setup fee."""
    plan = _plan()
    if plan is None:
        return redirect(url_for("upgrade.start"))
    if not plan.picker().ready():
        return redirect(url_for("upgrade.domains"))
    if request.method == "GET":
        return render_template("upgrade/review.html", **plan.context())
    return pay(plan.provision, plan.tier, plan.quote, plan.draft)
