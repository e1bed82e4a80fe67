"""Factories for test rows: plain functions taking a session and overrides."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crud import seed_default_tiers
from core.models import Provision
from core.models import Tier
from core.models import User


def make_user(session: Session, email: str) -> User:
    user = User(email=email, password_hash="x")
    session.add(user)
    session.flush()
    return user


def make_provision(session: Session, email: str, **fields: object) -> Provision:
    if session.scalar(select(Tier).limit(1)) is None:
        seed_default_tiers(session=session)
    tier = session.scalar(select(Tier).where(Tier.slug == "starter"))
    assert tier is not None
    provision = Provision(user=make_user(session, email), tier=tier, **fields)
    session.add(provision)
    session.flush()
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
    """A provision whose checkout is paid: status provisioning, domains selected."""
    from core.models import Domain

    if session.scalar(select(Tier).limit(1)) is None:
        seed_default_tiers(session=session)
    tier = session.scalar(select(Tier).where(Tier.slug == tier_slug))
    assert tier is not None
    user = User(email=email, name=f"{first_name} {last_name}", password_hash="x")
    provision = Provision(
        user=user,
        tier=tier,
        status="provisioning",
        sender_first_name=first_name,
        sender_last_name=last_name,
        username_patterns=list(patterns),
        stripe_checkout_session_id=f"cs_test_{email}",
    )
    session.add(provision)
    for name in domains:
        session.add(Domain(provision=provision, name=name))
    session.flush()
    return provision
