"""What the operator's Zapmail account must hold for the orders in hand and the next cohort.

Demand counts only what is still to be bought: the domains of paid orders (and paid upgrades
and paid burned-domain replacements) not set up yet, at their checked price or a .com estimate, and the mailbox slots their domains
still need; the same for checkouts awaiting payment; and the next cohort the admin plans, each
student in the package most students took. Supply is the latest snapshot the scheduled capacity
check stored: pages never call Zapmail. :func:`assess` compares the two and words the warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import CapacitySnapshot
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import OperatorSettings
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import ReplacementStatus
from core.models import Tier
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pricing import format_money

# Zapmail's .com first-year price (zapmail.md §9), for names whose price was never checked.
DOMAIN_PRICE_ESTIMATE_CENTS = 1299
# The scheduled check runs every 15 minutes; a reading older than this means it stopped.
STALE_AFTER = timedelta(hours=1)
OPEN = (ProvisionStatus.PROVISIONING.value, ProvisionStatus.FAILED.value)
OPEN_UPGRADE = (UpgradeStatus.PROVISIONING.value, UpgradeStatus.FAILED.value)
OPEN_REPLACEMENT = (ReplacementStatus.PROVISIONING.value, ReplacementStatus.FAILED.value)
UNBOUGHT = (PurchaseState.SELECTED.value, PurchaseState.INTENT.value)


@dataclass(frozen=True)
class Need:
    """Domains to buy (and their cost) and mailbox slots to fill, over some orders."""

    orders: int = 0
    domains: int = 0
    cents: int = 0
    mailboxes: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(
            self.orders + other.orders,
            self.domains + other.domains,
            self.cents + other.cents,
            self.mailboxes + other.mailboxes,
        )


@dataclass
class Capacity:
    """Supply (the latest snapshot), demand by source, and the warnings for the admin."""

    snapshot: CapacitySnapshot | None
    """The latest reading that worked."""
    failed: CapacitySnapshot | None
    """The latest reading that did not, when it is newer than ``snapshot``."""
    paid: Need
    pending: Need
    cohort: Need
    cohort_size: int | None
    cohort_tier: str | None
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(level, text): "danger" (paid orders short now), "warning" (short for what may come) or
    "reading" (the numbers themselves are missing or old)."""

    @property
    def shortages(self) -> list[str]:
        """The warnings that say the account runs short (not those about the reading)."""
        return [text for level, text in self.warnings if level != "reading"]

    @property
    def stale(self) -> bool:
        """Whether the latest reading is too old to trust."""
        return self.snapshot is None or utcnow() - self.snapshot.taken_at > STALE_AFTER


def _need(session: Session, which: Any) -> Need:
    rows = session.execute(
        select(
            Domain.id,
            Domain.provision_id,
            Domain.purchase_state,
            Domain.price_cents,
            Tier.mailboxes_per_domain,
        )
        .join(Provision, Provision.id == Domain.provision_id)
        .join(Tier, Tier.id == Provision.tier_id)
        .where(which, Domain.purchase_state != PurchaseState.ABANDONED.value)
    ).all()
    if not rows:
        return Need()
    created = dict(
        session.execute(
            select(Mailbox.domain_id, func.count())
            .where(
                Mailbox.domain_id.in_([r.id for r in rows]),
                Mailbox.zapmail_mailbox_id.is_not(None),
            )
            .group_by(Mailbox.domain_id)
        ).all()
    )
    unbought = [r for r in rows if r.purchase_state in UNBOUGHT]
    return Need(
        orders=len({r.provision_id for r in rows}),
        domains=len(unbought),
        cents=sum(r.price_cents or DOMAIN_PRICE_ESTIMATE_CENTS for r in unbought),
        mailboxes=sum(max(0, r.mailboxes_per_domain - created.get(r.id, 0)) for r in rows),
    )


def paid_need(session: Session) -> Need:
    """What paid orders, upgrades and replacements that are not set up yet still need."""
    open_upgrades = select(Upgrade.id).where(
        Upgrade.paid_at.is_not(None), Upgrade.status.in_(OPEN_UPGRADE)
    )
    open_replacements = select(DomainReplacement.new_domain_id).where(
        DomainReplacement.paid_at.is_not(None), DomainReplacement.status.in_(OPEN_REPLACEMENT)
    )
    return _need(
        session,
        or_(
            and_(
                Domain.upgrade_id.is_(None),
                Provision.paid_at.is_not(None),
                Provision.status.in_(OPEN),
            ),
            Domain.upgrade_id.in_(open_upgrades),
            Domain.id.in_(open_replacements),
        ),
    )


def pending_need(session: Session) -> Need:
    """What the checkouts awaiting payment would need if they were all paid."""
    return _need(
        session,
        and_(
            Domain.upgrade_id.is_(None),
            Provision.status == ProvisionStatus.PENDING_PAYMENT.value,
            Provision.stripe_checkout_session_id.is_not(None),
        ),
    )


def cohort_tier(session: Session) -> Tier | None:
    """The package most paying students took (the first active one when nobody paid yet)."""
    popular = session.scalar(
        select(Provision.tier_id)
        .where(Provision.paid_at.is_not(None))
        .group_by(Provision.tier_id)
        .order_by(func.count().desc(), Provision.tier_id)
        .limit(1)
    )
    if popular is not None:
        return session.get(Tier, popular)
    return session.scalar(
        select(Tier).where(Tier.active.is_(True)).order_by(Tier.sort_order, Tier.id).limit(1)
    )


def next_cohort_size(session: Session) -> int | None:
    """The size of the next cohort the admin entered, if any."""
    row = session.get(OperatorSettings, 1)
    return row.next_cohort_size if row is not None else None


def set_next_cohort_size(session: Session, size: int | None) -> None:
    """Store the next cohort's size (the caller commits)."""
    row = session.get(OperatorSettings, 1)
    if row is None:
        row = OperatorSettings(id=1)
        session.add(row)
    row.next_cohort_size = size


def latest_snapshot(session: Session, *, failed: bool = False) -> CapacitySnapshot | None:
    """The most recent reading of the Zapmail account that worked (or, ``failed``, that did not)."""
    return session.scalar(
        select(CapacitySnapshot)
        .where(CapacitySnapshot.error.is_not(None) if failed else CapacitySnapshot.error.is_(None))
        .order_by(CapacitySnapshot.taken_at.desc())
        .limit(1)
    )


def assess(session: Session) -> Capacity:
    """Supply against demand, with the admin's warnings, from the app DB only."""
    size = next_cohort_size(session)
    tier = cohort_tier(session) if size else None
    cohort = Need()
    if size and tier is not None:
        cohort = Need(
            orders=size,
            domains=size * tier.domain_count,
            cents=size * tier.domain_count * DOMAIN_PRICE_ESTIMATE_CENTS,
            mailboxes=size * tier.mailbox_count,
        )
    result = Capacity(
        snapshot=latest_snapshot(session),
        failed=latest_snapshot(session, failed=True),
        paid=paid_need(session),
        pending=pending_need(session),
        cohort=cohort,
        cohort_size=size,
        cohort_tier=tier.name if tier is not None else None,
    )
    if result.failed and result.snapshot and result.failed.taken_at < result.snapshot.taken_at:
        result.failed = None
    result.warnings = _warnings(result)
    return result


def _money(cents: int) -> str:
    return format_money(cents, "usd")


def _warnings(c: Capacity) -> list[tuple[str, str]]:
    snap = c.snapshot
    out: list[tuple[str, str]] = []
    if c.failed is not None:
        out.append(("reading", f"The capacity check of {_when(c.failed.taken_at)} could not "
                    f"read Zapmail: {c.failed.error}"))  # fmt: skip
    if snap is None:
        return [
            *out,
            ("reading", "No reading of the Zapmail account yet; it is read every 15 minutes."),
        ]
    if c.stale:
        out.append(("reading", f"The last reading is from {_when(snap.taken_at)}: is the "
                    "capacity-snapshot deployment running?"))  # fmt: skip
    # The first stage that is short is the one to act on: paid orders are short right now.
    stages = [
        ("danger", "the paid orders waiting to be set up", c.paid),
        ("warning", "those and the checkouts awaiting payment", c.paid + c.pending),
    ]
    if c.cohort_size:
        total = c.paid + c.pending + c.cohort
        stages.append(("warning", f"those and the next cohort of {c.cohort_size}", total))
    for level, what, need in stages:
        if snap.wallet_cents is not None and snap.wallet_cents < need.cents:
            gap = _money(need.cents - snap.wallet_cents)
            out.append((level, f"The wallet ({_money(snap.wallet_cents)}) does not cover {what} "
                        f"({_money(need.cents)} for {need.domains} domains): top up at least {gap}."))  # fmt: skip
            break
    for level, what, need in stages:
        if snap.slots_free is not None and snap.slots_free < need.mailboxes:
            gap = need.mailboxes - snap.slots_free
            out.append((level, f"{snap.slots_free} free mailbox slots do not cover {what} "
                        f"({need.mailboxes} mailboxes): buy at least {gap} add-on slots."))  # fmt: skip
            break
    return out


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
