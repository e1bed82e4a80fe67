"""Test rows: factory_boy factories for users, orders, domains, and the order shapes tests use."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date
from datetime import timedelta
from typing import Any

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from core.crud import seed_default_tiers
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from core.models import Tier
from core.models import User
from core.models import WarmupSnapshot
from core.pipeline import PROVISION_STEPS

PASSWORD = "correct-horse-battery"
# Real scrypt hashes, with cheap parameters: werkzeug reads them from the hash, so sign-ins in tests
# run the production check without its deliberate cost.
_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")

# Tests hold many sessions (per test, per backend, per flow), so the session is an argument of each
# call rather than a class setting; nested factories use the outer call's.
_session: ContextVar[Session] = ContextVar("factory_session")


class _Factory(SQLAlchemyModelFactory):
    """Rows flushed into the session of the outermost call: ``UserFactory(session=s, ...)``."""

    class Meta:
        abstract = True
        sqlalchemy_session_factory = _session.get
        sqlalchemy_session_persistence = "flush"

    @classmethod
    def create(cls, session: Session | None = None, **fields: Any) -> Any:
        """Create the row (and the rows it needs) in ``session``."""
        if session is None:
            return super().create(**fields)
        token = _session.set(session)
        try:
            return super().create(**fields)
        finally:
            _session.reset(token)


def tiers(session: Session) -> dict[str, Tier]:
    """The default tiers, created if missing."""
    seed_default_tiers(session=session)
    session.flush()
    return {t.slug: t for t in session.scalars(select(Tier))}


class UserFactory(_Factory):
    """A student who can sign in with PASSWORD."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password_hash = _HASH
    role = Role.STUDENT.value
    name = ""


class ProvisionFactory(_Factory):
    """An order on a default tier (``tier_slug``) with the sender the wizard asks for."""

    class Meta:
        model = Provision

    class Params:
        tier_slug = "starter"

    user = factory.SubFactory(UserFactory)
    tier = factory.LazyAttribute(lambda row: tiers(_session.get())[row.tier_slug])
    sender_first_name = "Tim"
    sender_last_name = "Keen"
    username_patterns = factory.LazyFunction(lambda: ["{first}", "{first}.{last}"])


class DomainFactory(_Factory):
    """A domain chosen for an order, not bought yet."""

    class Meta:
        model = Domain

    provision = factory.SubFactory(ProvisionFactory)
    name = factory.Sequence(lambda n: f"trybrand{n}.com")


class MailboxFactory(_Factory):
    """A live, warming mailbox for Tim Keen."""

    class Meta:
        model = Mailbox

    domain = factory.SubFactory(DomainFactory)
    username = "tim"
    address = factory.LazyAttribute(lambda box: f"{box.username}@{box.domain.name}")
    first_name = "Tim"
    last_name = "Keen"
    status = "ACTIVE"
    warmup_enabled = True


def make_user(session: Session, email: str, *, role: Role = Role.STUDENT, name: str = "") -> User:
    """A user who can sign in with PASSWORD."""
    return UserFactory(session=session, email=email, role=role.value, name=name)


def make_provision(
    session: Session,
    user: User,
    *,
    tier: str = "starter",
    status: str = "active",
    domains: list[str] | None = None,
    **fields: Any,
) -> Provision:
    """An order as the portal shows it: its domains and, once paid, two live mailboxes on each."""
    provision = ProvisionFactory(
        session=session, user=user, tier_slug=tier, status=status, **fields
    )
    slug = user.email.split("@")[0].replace(".", "").replace("+", "")
    names = domains or [f"try{slug}{i}.com" for i in range(provision.tier.domain_count)]
    for name in names:
        if status == "pending_payment":
            DomainFactory(session=session, provision=provision, name=name)
            continue
        domain = DomainFactory(
            session=session,
            provision=provision,
            name=name,
            status="ACTIVE",
            purchase_state="purchased",
            dmarc_email="dmarc@example.com",
        )
        for username in ("tim", "tim.keen"):
            MailboxFactory(session=session, domain=domain, username=username)
    return provision


def make_paid_provision(
    session: Session,
    *,
    email: str,
    domains: list[str],
    tier_slug: str = "starter",
    patterns: tuple[str, ...] = ("{first}", "{first}.{last}"),
    first_name: str = "Tim",
    last_name: str = "Keen",
) -> Provision:
    """An order whose checkout is paid: status provisioning, domains chosen, nothing bought yet."""
    provision = ProvisionFactory(
        session=session,
        user__email=email,
        user__name=f"{first_name} {last_name}",
        tier_slug=tier_slug,
        status="provisioning",
        sender_first_name=first_name,
        sender_last_name=last_name,
        username_patterns=list(patterns),
        stripe_checkout_session_id=f"cs_test_{email}",
    )
    for name in domains:
        DomainFactory(session=session, provision=provision, name=name)
    return provision


def add_snapshots(
    session: Session, provision: Provision, *, days: int = 20, health: float = 96.0
) -> None:
    """Daily warmup numbers for every mailbox, ending today."""
    today = utcnow().date()
    boxes = session.scalars(select(Mailbox).join(Domain).where(Domain.provision_id == provision.id))
    for box in boxes:
        for offset in range(days):
            day: date = today - timedelta(days=days - 1 - offset)
            session.add(
                WarmupSnapshot(
                    mailbox_id=box.id,
                    day=day,
                    health=min(100.0, health - (days - offset) * 0.2),
                    reply_rate=28.0 + (offset % 5),
                    sent=2 + 2 * offset if offset < 14 else 30,
                    warmup_sent=2 + 2 * offset,
                )
            )
    session.flush()


def set_steps(
    session: Session, provision: Provision, statuses: dict[str, str], **extra: Any
) -> None:
    """Write the step mirror rows as the provisioning flow would."""
    now = utcnow()
    for position, key in enumerate(PROVISION_STEPS):
        status = statuses.get(key, "pending")
        row = session.scalar(
            select(ProvisioningStep).where(
                ProvisioningStep.provision_id == provision.id, ProvisioningStep.step_key == key
            )
        )
        if row is None:
            row = ProvisioningStep(provision_id=provision.id, step_key=key, position=position)
            session.add(row)
        row.status = status
        if status != "pending":
            row.attempt = max(row.attempt or 0, 1)
            row.started_at = row.started_at or now - timedelta(minutes=5)
        if status in ("completed", "failed"):
            row.finished_at = now
        if status == "failed":
            row.error_message = extra.get("error_message", "We could not create your mailboxes.")
            row.error_detail = extra.get("error_detail", "ZapmailServerError: 500 boom")
    session.flush()
