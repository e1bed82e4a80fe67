"""A domain retired by a replacement is left out of live work; its successor joins once done.

Against the test database, no vendor: which domains the health check reads, which a provisioning
run plans, which a vendor wait checks and which mailboxes a sender-profile run changes, while a
replacement is under way and after it completed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import SenderProfile
from core.settings import Settings
from core.vendor_events import waited_items
from tasks import runtime
from tasks import sender_profile
from tasks.dns_health import find_health_domains
from tasks.mailbox_plan import tier_domains
from tests.factories import make_paid_provision


@pytest.fixture
def db(settings: Settings, session: Session) -> Iterator[Session]:
    """The task runtime on the test database."""
    runtime.use_settings(settings)
    try:
        yield session
    finally:
        runtime.use_settings(None)


def live_order(session: Session) -> tuple[Provision, DomainReplacement]:
    """An active Starter order, its 3 domains bought and warming, one being replaced."""
    provision = make_paid_provision(
        session, email="ret@student.test", domains=[f"retbrand{i}.com" for i in range(3)]
    )
    provision.status, provision.zapmail_workspace_id = "active", "ws-ret"
    for i, domain in enumerate(provision.domains):
        domain.purchase_state, domain.status, domain.zapmail_domain_id = (
            "purchased",
            "ACTIVE",
            f"z{i}",
        )
        session.add(
            Mailbox(
                domain=domain,
                address=f"tim@{domain.name}",
                username="tim",
                first_name="Tim",
                last_name="Keen",
            )
        )
    new = Domain(provision=provision, name="retbrandnew.com")
    replacement = DomainReplacement(
        provision=provision,
        old_domain=provision.domains[0],
        new_domain=new,
        reason="admin",
        payment="included",
        status="provisioning",
        paid_at=utcnow(),
    )
    session.add(replacement)
    session.flush()
    # The run has bought the new domain and created its mailbox.
    new.purchase_state, new.status, new.zapmail_domain_id = "purchased", "ACTIVE", "znew"
    session.add(
        Mailbox(
            domain=new,
            address="tim@retbrandnew.com",
            username="tim",
            first_name="Tim",
            last_name="Keen",
        )
    )
    session.commit()
    return provision, replacement


def test_while_a_replacement_runs_the_tier_is_the_old_domains_and_after_it_the_new_one(
    db: Session,
) -> None:
    provision, replacement = live_order(db)
    names = [f"retbrand{i}.com" for i in range(3)]

    # Under way: the new domain is the replacement run's, the old one still sends.
    assert sorted(d.name for d in tier_domains(provision)) == names
    assert len(find_health_domains.fn(provision.id)) == 4
    assert waited_items(db, provision)[0] == sorted([*names, "retbrandnew.com"])

    replacement.old_domain.retired_at = utcnow()
    replacement.status = "completed"
    db.commit()

    live = [*names[1:], "retbrandnew.com"]
    assert sorted(d.name for d in tier_domains(provision)) == live
    checked = db.query(Domain.name).filter(Domain.id.in_(find_health_domains.fn(provision.id)))
    assert sorted(name for (name,) in checked) == live
    domains, addresses = waited_items(db, provision)
    assert (domains, addresses) == (live, sorted(f"tim@{name}" for name in live))


def test_a_sender_profile_leaves_the_retired_domains_mailboxes_alone(db: Session) -> None:
    provision, replacement = live_order(db)
    replacement.old_domain.retired_at = utcnow()
    db.add(
        SenderProfile(provision_id=provision.id, revision=1, first_name="Ada", last_name="Byron")
    )
    db.commit()

    _workspace, _token, addresses = sender_profile._target(provision.id, 1)  # noqa: SLF001
    sender_profile._finish(provision.id, 1, "Ada", "Byron")  # noqa: SLF001

    assert "tim@retbrand0.com" not in addresses and len(addresses) == 3
    db.expire_all()
    names = {m.address: m.first_name for d in provision.domains for m in d.mailboxes}
    assert names.pop("tim@retbrand0.com") == "Tim"
    assert set(names.values()) == {"Ada"}
