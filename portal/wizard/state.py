"""Where the student stands in the wizard: the saved draft, the furthest open step, the guards.

Every step saves the draft, so the student can leave, return and move back and forth without
losing choices.
"""

from __future__ import annotations

from typing import Any

from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from core.mailboxes import MailboxNameError
from core.mailboxes import preview_addresses
from core.mailboxes import validate_sender_name
from core.models import Provision
from core.models import ProvisionStatus
from core.models import Tier
from portal import drafts
from portal.db import get_db
from portal.domain_picker import Picker

STEPS = (
    ("package", "Package"),
    ("domains", "Domains"),
    ("mailboxes", "Mailboxes"),
    ("review", "Review and pay"),
)


def provision() -> Provision | None:
    """The student's provision, if an order was ever placed."""
    return get_db().scalar(select(Provision).where(Provision.user_id == current_user.id))


def closed() -> ResponseReturnValue | None:
    """Redirect away from the wizard once the order is paid (or otherwise past payment)."""
    row = provision()
    if row is not None and row.status != ProvisionStatus.PENDING_PAYMENT.value:
        return redirect(url_for("dashboard.home"))
    return None


def offered_tiers() -> list[Tier]:
    """The packages on offer, in their display order."""
    return list(
        get_db().scalars(
            select(Tier).where(Tier.active.is_(True)).order_by(Tier.sort_order, Tier.id)
        )
    )


def chosen_tier(draft: dict[str, Any]) -> Tier | None:
    """The draft's package while it is still on offer."""
    if draft["tier_id"] is None:
        return None
    tier = get_db().get(Tier, draft["tier_id"])
    return tier if tier is not None and tier.active else None


def load() -> dict[str, Any]:
    """The student's saved order draft."""
    return drafts.load(get_db(), current_user.id, drafts.ORDER)


def save(draft: dict[str, Any]) -> None:
    """Save and commit the order draft."""
    db = get_db()
    drafts.save(db, current_user.id, drafts.ORDER, draft)
    db.commit()


def picker(draft: dict[str, Any], tier: Tier) -> Picker:
    """The domain step for this draft and package."""
    return Picker(get_db(), draft, tier.domain_count, current_user.id)


def preview(draft: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
    """Every address the draft would create, or None while its names or patterns are unusable."""
    try:
        name = validate_sender_name(draft["first_name"], draft["last_name"])
        return preview_addresses(draft["domains"], draft["patterns"], name.first, name.last)
    except MailboxNameError:
        return None


def preview_or_reason(
    domains: list[str], patterns: list[str], first: str, last: str
) -> tuple[list[tuple[str, list[str]]], str]:
    """Every address these choices make, or no address and the reason, in the student's words."""
    if not first.strip() or not last.strip():
        return [], "Enter your first and last name to see the addresses."
    try:
        name = validate_sender_name(first, last)
        return preview_addresses(domains, patterns, name.first, name.last), ""
    except MailboxNameError as exc:
        return [], f"{exc} The addresses appear once that is fixed."


def furthest(draft: dict[str, Any]) -> str:
    """The last step the student may open, given what the draft holds."""
    tier = chosen_tier(draft)
    if tier is None:
        return "package"
    if not picker(draft, tier).ready():
        return "domains"
    if len(draft["patterns"]) != tier.mailboxes_per_domain or preview(draft) is None:
        return "mailboxes"
    return "review"


def guard(step: str, draft: dict[str, Any]) -> ResponseReturnValue | None:
    """Redirect to the furthest open step when ``step`` lies beyond it."""
    order = [key for key, _ in STEPS]
    reachable = furthest(draft)
    if order.index(step) > order.index(reachable):
        return redirect(url_for(f"wizard.{reachable}"))
    return None


def page(template: str, step: str, draft: dict[str, Any], **context: Any) -> str:
    """Render a wizard step with its stepper."""
    return render_template(
        template, steps=STEPS, step=step, furthest=furthest(draft), draft=draft, **context
    )
