"""Burned-domain replacements: when a domain may be replaced, who pays, and the request itself.

A domain is burned when an admin marked it so, its latest Zapmail health score is critical, or
the warmup sync labelled one of its mailboxes burned (PlusVibe's warmup health). The
student (or an admin, for any live domain) asks for a new domain; the request reserves the new
name (a SELECTED domain row, unique across the system) and records the replacement, one per old
domain. The tier's allowance decides who pays: within ``replacements_included`` per 30 days
the replacement is included and its run is queued in the same transaction (outbox); past it,
the replacement waits for a one-time Stripe invoice, and only that invoice, read from Stripe as
paid, queues the run (:func:`mark_paid`). An unpaid request can be withdrawn once its invoice
is void (:func:`withdraw`); then the domain may be replaced again. Nothing here calls Stripe, Zapmail or Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.dns_health import CRITICAL_SCORE
from core.health import HealthLabel
from core.models import Domain
from core.models import DomainHealth
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import ReplacementStatus

REPLACEMENT_DEPLOYMENT = "replace-domain/on-demand"
ALLOWANCE_PERIOD = timedelta(days=30)
# Replacing needs the provision's workspaces and a settled pipeline: only an active order.
REPLACEABLE_PROVISION = {ProvisionStatus.ACTIVE.value}
OPEN = {ReplacementStatus.PENDING_PAYMENT.value, ReplacementStatus.PROVISIONING.value}


class ReplacementRefusedError(Exception):
    """The replacement cannot be requested; ``str(exc)`` is what the student or admin reads."""


@dataclass(frozen=True)
class Allowance:
    """A provision's replacements in the current 30 days against its tier's allowance."""

    included: int
    used: int
    fee_cents: int
    currency: str

    @property
    def remaining(self) -> int:
        """Included replacements still free in this period."""
        return max(self.included - self.used, 0)


def replacement_key(replacement_id: int) -> str:
    """The outbox and Prefect idempotency key of a replacement's run."""
    return f"replacement:{replacement_id}"


def burned_reason(db: Session, domain: Domain) -> str | None:
    """Why the domain counts as burned ("admin", "critical_score", "health_label"), or None."""
    if domain.burned_at is not None:
        return "admin"
    score = db.scalar(
        select(DomainHealth.score)
        .where(DomainHealth.domain_id == domain.id)
        .order_by(DomainHealth.checked_on.desc(), DomainHealth.id.desc())
        .limit(1)
    )
    if score is not None and score <= CRITICAL_SCORE:
        return "critical_score"
    # The warmup sync labels each mailbox from PlusVibe's health; one burned mailbox burns it.
    burned = db.scalar(
        select(Mailbox.id)
        .where(Mailbox.domain_id == domain.id, Mailbox.health_label == HealthLabel.BURNED.value)
        .limit(1)
    )
    return None if burned is None else "health_label"


def allowance(db: Session, provision: Provision, now: datetime | None = None) -> Allowance:
    """Included replacements used in the last 30 days, against the provision's tier."""
    since = (now or utcnow()) - ALLOWANCE_PERIOD
    used = db.scalar(
        select(func.count())
        .select_from(DomainReplacement)
        .where(
            DomainReplacement.provision_id == provision.id,
            DomainReplacement.payment == "included",
            DomainReplacement.created_at >= since,
            DomainReplacement.status != ReplacementStatus.CANCELLED.value,
        )
    )
    tier = provision.tier
    return Allowance(
        included=tier.replacements_included,
        used=int(used or 0),
        fee_cents=tier.replacement_fee_cents,
        currency=tier.currency,
    )


def live_domains(provision: Provision) -> list[Domain]:
    """The provision's bought domains that are still in use (not retired by a replacement)."""
    return [
        d
        for d in provision.domains
        if d.retired_at is None and d.purchase_state == PurchaseState.PURCHASED.value
    ]


def replacement_of(db: Session, domain: Domain) -> DomainReplacement | None:
    """The replacement requested for ``domain`` (as the old domain), if any."""
    return db.scalar(select(DomainReplacement).where(DomainReplacement.old_domain_id == domain.id))


def refusal(
    db: Session, provision: Provision, old_domain: Domain, *, by_admin: bool = False
) -> str | None:
    """Why ``old_domain`` cannot be replaced now (the words to show), or None when it can."""
    return _refusal(db, provision, old_domain, by_admin)


def _refusal(db: Session, provision: Provision, old: Domain, by_admin: bool) -> str | None:
    if provision.status not in REPLACEABLE_PROVISION:
        return "Domains can be replaced once your setup is complete and your account is active."
    if old.provision_id != provision.id:
        return "That domain is not part of this order."
    if old.retired_at is not None or old.purchase_state != PurchaseState.PURCHASED.value:
        return f"{old.name} is not a live domain of this order."
    if replacement_of(db, old) is not None:
        return f"A replacement for {old.name} was already requested."
    if not by_admin and burned_reason(db, old) is None:
        return (
            f"{old.name} is healthy, so it cannot be replaced yet. A domain can be replaced once "
            "its health score turns critical or your instructor marks it burned."
        )
    return None


def request_replacement(
    db: Session,
    *,
    provision: Provision,
    old_domain: Domain,
    new_name: str,
    price_cents: int | None,
    requested_by_id: int | None,
    by_admin: bool = False,
) -> DomainReplacement:
    """Record a replacement of ``old_domain`` by ``new_name`` (checked available by the caller).

    Included replacements are queued at once (outbox, same transaction); the others wait in
    ``pending_payment`` for their invoice. Raises ReplacementRefusedError with words to show.
    """
    # Serialise requests of one provision, so two tabs cannot both use the last included one.
    db.execute(
        update(Provision)
        .where(Provision.id == provision.id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.refresh(provision)
    refusal = _refusal(db, provision, old_domain, by_admin)
    if refusal is not None:
        raise ReplacementRefusedError(refusal)
    if db.scalar(select(Domain.id).where(Domain.name == new_name)) is not None:
        raise ReplacementRefusedError(f"{new_name} is already taken; pick another domain.")
    reason = burned_reason(db, old_domain) or "admin_request"
    budget = allowance(db, provision)
    included = budget.remaining > 0 or budget.fee_cents == 0
    new_domain = Domain(
        provision_id=provision.id,
        name=new_name,
        price_cents=price_cents,
        purchase_state=PurchaseState.SELECTED.value,
    )
    db.add(new_domain)
    db.flush()
    replacement = DomainReplacement(
        provision_id=provision.id,
        old_domain_id=old_domain.id,
        new_domain_id=new_domain.id,
        reason=reason,
        requested_by_id=requested_by_id,
        payment="included" if included else "charged",
        fee_cents=0 if included else budget.fee_cents,
        status=ReplacementStatus.PENDING_PAYMENT.value,
    )
    db.add(replacement)
    db.flush()
    if included:
        _start(db, replacement)
    return replacement


def mark_paid(db: Session, replacement: DomainReplacement, invoice_id: str) -> str:
    """The replacement's invoice is paid (as Stripe reports it): queue its run, at most once."""
    if replacement.stripe_invoice_id not in (None, invoice_id):
        return "unknown_replacement"
    replacement.stripe_invoice_id = invoice_id
    return _start(db, replacement)


def withdraw(db: Session, replacement: DomainReplacement) -> bool:
    """Forget an unpaid request, freeing its new name and its old domain for a new request.

    The caller first makes sure its invoice can no longer be paid (voided at Stripe). Only a
    ``pending_payment`` row goes (compare-and-delete): a paid one, or one a webhook just
    started, stays. Its new domain was never bought (SELECTED), so nothing at a vendor is lost.
    """
    gone = db.execute(
        delete(DomainReplacement)
        .where(
            DomainReplacement.id == replacement.id,
            DomainReplacement.status == ReplacementStatus.PENDING_PAYMENT.value,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if gone != 1:
        return False
    db.execute(
        delete(Domain)
        .where(
            Domain.id == replacement.new_domain_id,
            Domain.purchase_state == PurchaseState.SELECTED.value,
        )
        .execution_options(synchronize_session=False)
    )
    db.expire_all()
    return True


def _start(db: Session, replacement: DomainReplacement) -> str:
    db.flush()
    won = db.execute(
        update(DomainReplacement)
        .where(
            DomainReplacement.id == replacement.id,
            DomainReplacement.status == ReplacementStatus.PENDING_PAYMENT.value,
        )
        .values(status=ReplacementStatus.PROVISIONING.value, paid_at=utcnow(), status_reason=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return "replacement_already_started"
    outbox.enqueue(
        db,
        key=replacement_key(replacement.id),
        deployment=REPLACEMENT_DEPLOYMENT,
        parameters={"replacement_id": replacement.id},
    )
    db.refresh(replacement)
    return "replacement_started"
