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
