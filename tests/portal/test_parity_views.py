"""Parity pages: the wizard's website, the dashboard's forwarding and DNS panel, admin capacity."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.dns_health import assess
from core.models import AuditLog
from core.models import CapacitySnapshot
from core.models import DomainHealth
from core.models import OperatorSettings
from core.models import OutboxMessage
from core.models import Provision
from core.models import WizardDraft
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.test_admin_views import _admin_client
from tests.portal.test_wizard_views import _choose_domains
from tests.portal.test_wizard_views import _tier_id
from tests.portal.test_wizard_views import student  # noqa: F401 - the fixture

GOOD = [
    {"type": "MX", "host": "@", "value": "smtp.google.com"},
    {"type": "TXT", "host": "@", "value": "v=spf1 include:_spf.google.com ~all"},
    {"type": "TXT", "host": "google._domainkey", "value": "v=DKIM1; k=rsa; p=MIIBIjAN"},
    {"type": "TXT", "host": "_dmarc", "value": "v=DMARC1; p=none; rua=mailto:dmarc@example.com"},
]


@pytest.fixture
def ann(session: Session, auth: Any) -> Any:
    """A signed-in student."""
    user = make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    return user


def outbox_rows(session: Session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def store_check(session: Session, domain: Any, records: list[dict], score: int | None) -> None:
    result = assess(domain.name, records, dmarc_email="dmarc@example.com", score=score)
    session.add(
        DomainHealth(
            domain_id=domain.id,
            checked_on=utcnow().date(),
            checked_at=utcnow(),
            records=result.records,
            score=score,
            problems=result.problems,
        )
    )


def test_dashboard_shows_each_domains_records_score_and_advice(
    client: Any, ann: Any, session: Session
) -> None:
    provision = make_provision(session, ann, status="active", forward_to="https://ann.example/")
    first, second, third = provision.domains
    for domain in provision.domains:
        domain.forwarded_to = "https://ann.example/"
    store_check(session, first, GOOD, 96)
    store_check(session, second, [r for r in GOOD if r["host"] != "_dmarc"], 22)
    session.commit()

    page = client.get("/dashboard").get_data(as_text=True)

    assert "Website and domain health" in page
    assert "Visitors of your cold domains land on" in page and "https://ann.example/" in page
    assert "In place" in page
    assert "Healthy (96)" in page and "All records OK" in page
    assert "Critical (22)" in page
    assert "No DMARC record: inboxes treat the domain as less trustworthy." in page
    assert "Zapmail rates this domain critical: stop sending from it." in page
    assert "Missing" in page
    assert f'<strong>{third.name}</strong> <span class="badge badge-gray">Not checked yet' in page


def test_forwarding_change_is_stored_audited_and_queued_once_per_change(
    client: Any, ann: Any, session: Session
) -> None:
    provision = make_provision(session, ann, status="active")
    session.commit()

    page = client.post(
        "/dashboard/forwarding",
        data={"website": "ann.example/about", "action": "save"},
        follow_redirects=True,
    ).get_data(as_text=True)

    assert "Your domains will forward to https://ann.example/about within a few minutes." in page
    assert "Being applied" in page  # Zapmail does not forward yet
    session.expire_all()
    assert session.get(Provision, provision.id).forward_to == "https://ann.example/about"
    (row,) = outbox_rows(session)
    assert row.payload == {
        "deployment": "forwarding/on-demand",
        "parameters": {"provision_id": provision.id, "request": row.key},
    }
    # The student's own sign-in is audited too; the change is the one row after it.
    actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert [a for a in actions if a != "sign_in"] == ["forwarding_changed"]

    same = client.post(
        "/dashboard/forwarding", data={"website": "https://ann.example/about", "action": "save"}
    )
    assert same.status_code == 303 and len(outbox_rows(session)) == 1

    page = client.post(
        "/dashboard/forwarding", data={"action": "remove"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Forwarding stops within a few minutes." in page
    session.expire_all()
    assert session.get(Provision, provision.id).forward_to is None
    assert [r.payload["deployment"] for r in outbox_rows(session)] == ["forwarding/on-demand"] * 2


@pytest.mark.parametrize(
    ("website", "message"),
    [
        ("https://{cold}/", "is one of your cold-email domains; enter your main website instead."),
        ("https://www.{cold}", "is one of your cold-email domains"),
        ("ftp://ann.example", "Use a website address starting with https:// or http://."),
        ("", "Enter your website&#39;s address, or choose Stop forwarding."),
    ],
)
def test_forwarding_refuses_cold_domains_and_non_web_addresses(
    client: Any, ann: Any, session: Session, website: str, message: str
) -> None:
    provision = make_provision(session, ann, status="active", forward_to="https://ann.example/")
    cold = provision.domains[0].name
    session.commit()
    page = client.post(
        "/dashboard/forwarding",
        data={"website": website.format(cold=cold), "action": "save"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert message in page
    session.expire_all()
    assert session.get(Provision, provision.id).forward_to == "https://ann.example/"
    assert outbox_rows(session) == []


def test_forwarding_and_checks_are_closed_to_a_cancelled_order(
    client: Any, ann: Any, session: Session
) -> None:
    make_provision(session, ann, status="cancelled")
    session.commit()
    assert client.post("/dashboard/forwarding", data={"website": "ann.example"}).status_code == 404
    assert client.post("/dashboard/dns/check").status_code == 404
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Save website" not in page and "Check now" not in page
    assert outbox_rows(session) == []


def test_check_now_queues_one_run_per_hour(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="active")
    session.commit()
    first = client.post("/dashboard/dns/check", follow_redirects=True).get_data(as_text=True)
    assert "Checking your domains&#39; DNS now" in first
    second = client.post("/dashboard/dns/check", follow_redirects=True).get_data(as_text=True)
    assert "Your domains were checked within the hour" in second
    (row,) = outbox_rows(session)
    assert row.payload == {
        "deployment": "dns-health/on-demand",
        "parameters": {"provision_id": provision.id},
    }


@pytest.mark.usefixtures("student")
def test_wizard_keeps_the_website_and_refuses_a_chosen_cold_domain(
    client: Any, session: Session
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    chosen = _choose_domains(client)
    client.post("/wizard/domains", data={"action": "continue"})
    fields = {"first_name": "Tim", "last_name": "Keen", "pattern_0": "{first}"}
    fields["pattern_1"] = "{first}.{last}"

    refused = client.post("/wizard/mailboxes", data={**fields, "website": f"www.{chosen[0]}"})
    assert refused.status_code == 400
    assert f"{chosen[0]} is one of your cold-email domains" in refused.get_data(as_text=True)

    kept = client.post("/wizard/mailboxes", data={**fields, "website": "Ann.Example"})
    assert kept.status_code == 200
    session.expire_all()
    draft = session.scalars(select(WizardDraft.data)).one()
    assert draft["forward_to"] == "https://ann.example/"
    page = client.get("/wizard/mailboxes").get_data(as_text=True)
    assert 'name="website" value="https://ann.example/"' in page

    client.post("/wizard/mailboxes", data={**fields, "website": ""})
    session.expire_all()
    assert session.scalars(select(WizardDraft.data)).one()["forward_to"] is None


def test_admin_home_shows_capacity_against_orders_and_the_next_cohort(
    app: Flask, session: Session
) -> None:
    admin = _admin_client(app, session)
    waiting = make_user(session, "wait@example.com")
    # A paid Starter order not set up yet: 3 domains to buy (priced 12.99), 6 mailboxes.
    order = make_provision(session, waiting, status="provisioning", paid_at=utcnow())
    for domain in order.domains:
        domain.purchase_state, domain.price_cents = "selected", 1299
    session.add(
        CapacitySnapshot(
            taken_at=utcnow() - timedelta(minutes=5),
            wallet_cents=5000,
            slots_purchased=100,
            slots_free=10,
        )
    )
    session.commit()

    page = admin.get("/admin/cohort").get_data(as_text=True)
    assert "Zapmail capacity" in page
    assert "$50" in page and "10 free of 100" in page
    assert "$38.97" in page  # 3 × $12.99
    assert "The wallet and mailbox slots cover the waiting orders." in page

    saved = admin.post(
        "/admin/capacity/cohort", data={"next_cohort_size": "10"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Next cohort: 10 students." in saved
    assert session.get(OperatorSettings, 1).next_cohort_size == 10
    # 10 more Starter students: 30 domains at $12.99 and 60 mailboxes.
    assert "10 × Starter" in saved
    assert "The wallet ($50) does not cover those and the next cohort of 10" in saved
    assert "top up at least $378.67." in saved
    assert "10 free mailbox slots do not cover those and the next cohort of 10" in saved
    assert "buy at least 56 add-on slots." in saved

    refused = admin.post(
        "/admin/capacity/cohort", data={"next_cohort_size": "-3"}, follow_redirects=True
    )
    assert "Number must be between 0 and 10000." in refused.get_data(as_text=True)
    assert session.get(OperatorSettings, 1).next_cohort_size == 10


def test_admin_home_says_when_zapmail_was_never_read_or_paid_orders_are_short(
    app: Flask, session: Session
) -> None:
    admin = _admin_client(app, session)
    assert "No reading of the Zapmail account yet" in admin.get("/admin/cohort").get_data(
        as_text=True
    )
    waiting = make_user(session, "wait@example.com")
    # Its domains are bought, none of its 6 mailboxes is created.
    make_provision(session, waiting, status="failed", paid_at=utcnow(), remedy="capacity")
    session.add(
        CapacitySnapshot(
            taken_at=utcnow() - timedelta(minutes=20),
            wallet_cents=0,
            slots_purchased=4,
            slots_free=4,
        )
    )
    # The next reading failed: the numbers shown stay those of the last one that worked.
    session.add(CapacitySnapshot(taken_at=utcnow(), error="ZapmailServerError: 503 busy"))
    session.commit()
    page = admin.get("/admin/cohort").get_data(as_text=True)
    assert "could not read Zapmail: ZapmailServerError: 503 busy" in page
    assert "4 free of 4" in page
    assert 'class="flash flash-error">4 free mailbox slots do not cover the paid orders' in page
    assert "buy at least 2 add-on slots." in page
