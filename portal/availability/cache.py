"""Cache policy: what a cached Zapmail answer means for a student, when it is stale, storing answers.

Answers live in ``domain_checks`` for every student (the check budget is account-wide); a name
another student already chose is never checked again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.domains import DomainNameError
from core.domains import validate_domain
from core.models import Domain
from core.models import DomainCheck
from core.models import Provision
from core.pricing import MAX_INCLUDED_DOMAIN_PRICE_CENTS
from core.pricing import cents_from_decimal
from core.pricing import format_money
from portal.availability.answers import AVAILABLE
from portal.availability.answers import INVALID
from portal.availability.answers import PREMIUM
from portal.availability.answers import TAKEN
from portal.availability.answers import TOO_EXPENSIVE
from portal.availability.answers import UNKNOWN
from portal.availability.answers import Availability
from portal.availability.config import AvailabilityConfig


def from_cache(row: DomainCheck, now: datetime, config: AvailabilityConfig) -> Availability:
    """The student's answer for a cached row, marked stale past its lifetime."""
    ttl = config.ttl_available_s if row.available else config.ttl_taken_s
    stale = (now - row.checked_at).total_seconds() > ttl
    if not row.available:
        result = Availability(row.name, TAKEN, "Taken: someone already owns this domain.")
    elif row.is_premium:
        result = Availability(
            row.name, PREMIUM, "Premium name: priced above what your package includes."
        )
    elif row.price_cents is None or row.price_cents <= 0:
        result = Availability(row.name, UNKNOWN, "The provider gave no price for this name.")
    elif row.price_cents > MAX_INCLUDED_DOMAIN_PRICE_CENTS:
        result = Availability(
            row.name,
            TOO_EXPENSIVE,
            f"Costs {format_money(row.price_cents)} a year: above the "
            f"{format_money(MAX_INCLUDED_DOMAIN_PRICE_CENTS)} your package includes per domain.",
        )
    else:
        result = Availability(row.name, AVAILABLE, "Available: included in your package.")
    result.price_cents = row.price_cents
    result.renew_cents = row.renew_price_cents
    result.checked_at = row.checked_at
    result.stale = stale
    return result


def validate(names: Iterable[str]) -> tuple[list[str], dict[str, Availability]]:
    """Split ``names`` into normalized valid names (deduplicated) and answers for invalid ones."""
    valid: list[str] = []
    invalid: dict[str, Availability] = {}
    for raw in names:
        try:
            name = validate_domain(raw)
        except DomainNameError as exc:
            invalid[raw] = Availability(raw, INVALID, str(exc))
            continue
        if name not in valid:
            valid.append(name)
    return valid, invalid


def cached(db: Session, names: list[str]) -> dict[str, DomainCheck]:
    """The cached rows of ``names``, freshly read."""
    if not names:
        return {}
    # populate_existing: another request (or worker) may have answered since we last looked.
    rows = db.scalars(
        select(DomainCheck)
        .where(DomainCheck.name.in_(names))
        .execution_options(populate_existing=True)
    )
    return {row.name: row for row in rows}


def claimed(db: Session, names: list[str], user_id: int | None) -> set[str]:
    """Names of ``names`` already in a provision (of anyone but ``user_id``, when given)."""
    if not names:
        return set()
    query = select(Domain.name).join(Provision).where(Domain.name.in_(names))
    if user_id is not None:
        query = query.where(Provision.user_id != user_id)
    return set(db.scalars(query))


def needs_check(db: Session, names: list[str], config: AvailabilityConfig) -> list[str]:
    """Names nobody chose whose cached answer is missing or stale."""
    now = utcnow()
    rows = cached(db, names)
    taken = claimed(db, names, None)
    return [
        n
        for n in names
        if n not in taken and (n not in rows or from_cache(rows[n], now, config).stale)
    ]


def store(db: Session, rows: list[Any]) -> None:
    """Cache Zapmail's answer rows, replacing older answers for the same names."""
    now = utcnow()
    names = [row.domain_name.strip().lower() for row in rows]
    existing = cached(db, names)
    for row, name in zip(rows, names, strict=True):
        cache = existing.get(name)
        if cache is None:
            cache = DomainCheck(name=name)
            db.add(cache)
            existing[name] = cache
        cache.available = bool(row.available)
        cache.price_cents = cents_from_decimal(row.domain_price) if row.available else None
        cache.renew_price_cents = cents_from_decimal(row.renew_price) if row.available else None
        cache.is_premium = bool(row.is_premium_domain)
        cache.checked_at = now
    db.flush()
