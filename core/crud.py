"""Plain data-access functions shared by the CLI, the portal and the flows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Role
from core.models import Tier
from core.models import User
from core.passwords import hash_password


@dataclass(frozen=True)
class TierSpec:
    """The commercial definition of a package."""

    slug: str
    name: str
    domain_count: int
    mailboxes_per_domain: int
    setup_cents: int
    monthly_cents: int
    sort_order: int


DEFAULT_TIERS = (
    TierSpec("starter", "Starter", 3, 2, 9700, 4700, 10),
    TierSpec("growth", "Growth", 5, 2, 14700, 7700, 20),
    TierSpec("scale", "Scale", 10, 2, 24700, 12700, 30),
)


def normalize_email(email: str) -> str:
    """Return the canonical (trimmed, lower-case) form of an email address."""
    return email.strip().lower()


def get_user_by_email(*, session: Session, email: str) -> User | None:
    """Return the user with ``email`` (case-insensitive), if any."""
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def upsert_user(
    *, session: Session, email: str, password: str | None, role: Role, name: str = ""
) -> tuple[User, bool]:
    """Create the user or bring an existing one to the given role/password; return (user, created)."""
    user = get_user_by_email(session=session, email=email)
    created = user is None
    if user is None:
        if password is None:
            raise ValueError("a password is required to create a user")
        user = User(email=normalize_email(email), password_hash=hash_password(password))
        session.add(user)
    elif password is not None:
        user.password_hash = hash_password(password)
    user.role = role.value
    if name:
        user.name = name
    session.flush()
    return user, created


def seed_default_tiers(*, session: Session) -> list[str]:
    """Insert the default tiers that are missing (by slug); return the slugs created."""
    existing = set(session.scalars(select(Tier.slug)))
    created = []
    for spec in DEFAULT_TIERS:
        if spec.slug in existing:
            continue
        session.add(
            Tier(
                slug=spec.slug,
                name=spec.name,
                domain_count=spec.domain_count,
                mailboxes_per_domain=spec.mailboxes_per_domain,
                setup_cents=spec.setup_cents,
                monthly_cents=spec.monthly_cents,
                sort_order=spec.sort_order,
            )
        )
        created.append(spec.slug)
    session.flush()
    return created
