"""Test helpers for burned-domain replacements: burned domains, free names, the student's walk."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import DomainHealth
from core.models import Provision
from sandbox.vendors.zapmail.catalog import registered_elsewhere

STRIPE_AUTH = {"Authorization": "Bearer sk_test_sandbox"}


def free_name(stem: str) -> str:
    """A .com name the sandbox's Zapmail sells (its deterministic 'owned elsewhere' rule says no)."""
    for i in range(100):
        name = f"{stem}{i}.com"
        if not registered_elsewhere(name):
            return name
    raise AssertionError(f"no free name for {stem}")


def critical(session: Session, domain: Domain, score: int = 20) -> None:
    """Store today's DNS check of ``domain`` with a critical score, as the dns-health flow would."""
    session.add(
        DomainHealth(
            domain_id=domain.id, checked_on=utcnow().date(), checked_at=utcnow(), score=score
        )
    )
    session.flush()


def first_domain(session: Session, provision: Provision) -> Domain:
    """The provision's first domain (by id)."""
    return session.scalars(
        select(Domain).where(Domain.provision_id == provision.id).order_by(Domain.id)
    ).first()


def pick(client: Any, domain_id: int, name: str) -> Any:
    """Check ``name`` on the replace page (an available one is picked) and continue; the answer."""
    url = f"/dashboard/domains/{domain_id}/replace"
    client.post(url, data={"action": "check", "name": name})
    return client.post(url, data={"action": "continue"})


def confirm(client: Any, domain_id: int, name: str, **kwargs: Any) -> Any:
    """Send the confirm form for replacing ``domain_id`` by ``name``."""
    return client.post(
        f"/dashboard/domains/{domain_id}/replace/confirm", data={"new_domain": name}, **kwargs
    )


def replacement_id(location: str) -> int:
    """The replacement id of a progress page's address."""
    match = re.fullmatch(r"/dashboard/replacements/(\d+)", location)
    assert match, location
    return int(match.group(1))
