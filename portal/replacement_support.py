"""What the student's and the admin's replacement pages share: the allowance in words, the
availability re-check before a request, and the email telling a student about an admin's request.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.health import MIN_WARMUP_DAYS
from core.models import DomainReplacement
from core.models import Notification
from core.pricing import format_money
from core.replacements import Allowance
from portal.availability import service_for

# Why a domain counts as burned, in the student's words (core.replacements.burned_reason).
BURNED_WORDS = {
    "admin": "Marked burned by your instructor",
    "critical_score": "Critical health score",
    "health_label": "A mailbox's warmup health says it is burned",
}


def allowance_words(budget: Allowance) -> str:
    """Who pays for the next replacement, in the student's words."""
    if budget.fee_cents == 0:
        return "Replacements are included in your package."
    if budget.remaining > 0:
        plural = "s" if budget.included != 1 else ""
        return (
            f"{budget.remaining} of {budget.included} included replacement{plural} left this month."
        )
    fee = format_money(budget.fee_cents, budget.currency)
    return f"This replacement costs {fee}, charged to your card on file."


def availability_problem(db: Session, name: str, user_id: int | None) -> str | None:
    """Re-check ``name`` (live, within the shared budget) before it is requested; why it cannot
    be bought now, or None when it can.

    When the budget is spent, a recent-enough "available" still counts, as at checkout: the
    replacement run re-checks the name before buying anyway.
    """
    service = service_for(db, current_app.config, current_app.extensions["settings"])
    result = service.check([name], user_id=user_id).results[name]
    if not result.selectable:
        return result.reason
    max_age = timedelta(seconds=int(current_app.config["CHECKOUT_MAX_CHECK_AGE_S"]))
    if result.checked_at is None or utcnow() - result.checked_at > max_age:
        return "its availability could not be confirmed; try again shortly"
    return None


def price_of(db: Session, name: str, user_id: int | None) -> int | None:
    """The cached yearly price of ``name`` (no vendor call)."""
    service = service_for(db, current_app.config, current_app.extensions["settings"])
    return service.lookup([name], user_id=user_id)[name].price_cents


def tell_student_of_admin_request(db: Session, replacement: DomainReplacement) -> None:
    """Queue the email telling the student an instructor asked to replace one of their domains."""
    key = f"replacement-requested:{replacement.id}"
    if db.scalar(select(Notification.id).where(Notification.key == key)) is not None:
        return
    provision = replacement.provision
    old, new = replacement.old_domain.name, replacement.new_domain.name
    link = current_app.config["PUBLIC_URL"] + url_for(
        "dashboard.replacement", replacement_id=replacement.id
    )
    if replacement.payment == "charged":
        fee = format_money(replacement.fee_cents, provision.tier.currency)
        money = (
            f"This replacement costs {fee} (your package's included replacements for this "
            "month are used). It starts once you pay it on this page, with your card on file:\n"
        )
    else:
        money = "It is included in your package. Follow it here:\n"
    db.add(
        Notification(
            key=key,
            recipient=provision.user.email,
            subject=f"Your instructor is replacing your domain {old}",
            body=(
                f"Hello {provision.user.name or provision.user.email},\n\n"
                f"Your instructor asked to replace your domain {old} with {new}. We buy {new} "
                f"and create the same mailboxes on it; their warmup starts again, so send no "
                f"cold email from them for the first {MIN_WARMUP_DAYS} days. The mailboxes of {old} stop "
                "sending and are removed at their renewal.\n\n"
                f"{money}{link}\n"
            ),
        )
    )
