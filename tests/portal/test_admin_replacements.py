"""Admin: mark domains burned, replace any live domain, retry a stopped replacement, tier settings."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AuditLog
from core.models import Domain
from core.models import DomainReplacement
from core.models import Notification
from core.models import OutboxMessage
from core.models import Role
from core.models import Tier
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import tiers
from tests.portal.helpers import signed_in
from tests.portal.replacement_support import critical
from tests.portal.replacement_support import first_domain
from tests.portal.replacement_support import free_name


@pytest.fixture
def admin(app: Flask, session: Session) -> Any:
    """A signed-in admin."""
    make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    return signed_in(app, "boss@example.com")


def _audit(session: Session) -> list[tuple[str, dict[str, Any]]]:
    session.expire_all()
    rows = session.scalars(
        select(AuditLog).where(AuditLog.target_type == "provision").order_by(AuditLog.id)
    )
    return [(row.action, row.details) for row in rows]


def _provision(session: Session, email: str = "ann@example.com", **fields: Any) -> Any:
    provision = make_provision(session, make_user(session, email), **fields)
    session.commit()
    return provision


def test_mark_and_clear_burned_are_audited_and_shown_to_the_student(
    app: Flask, admin: Any, session: Session
) -> None:
    provision = _provision(session)
    domain = first_domain(session, provision)
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    assert "Burned domains and replacements" in page and "Mark burned" in page
    assert "1 of 1 included replacement left this month." in page

    response = admin.post(f"/admin/domains/{domain.id}/burned")
    assert response.headers["Location"].endswith(f"/admin/provisions/{provision.id}#replacements")
    session.expire_all()
    assert session.get(Domain, domain.id).burned_at is not None
    student = signed_in(app, "ann@example.com")
    dashboard = student.get("/dashboard").get_data(as_text=True)
    assert "Marked burned by your instructor" in dashboard
    assert f'href="/dashboard/domains/{domain.id}/replace"' in dashboard
    # Marking twice changes nothing and records nothing more.
    admin.post(f"/admin/domains/{domain.id}/burned")
    assert _audit(session) == [
        ("domain_marked_burned", {"domain_id": domain.id, "domain": domain.name})
    ]

    admin.post(f"/admin/domains/{domain.id}/unburned")
    session.expire_all()
    assert session.get(Domain, domain.id).burned_at is None
    assert [a for a, _ in _audit(session)] == ["domain_marked_burned", "domain_burned_cleared"]
    assert "Replace this domain" not in student.get("/dashboard").get_data(as_text=True)
    # A critical score still counts after the mark is cleared: the admin is told so.
    critical(session, domain)
    session.commit()
    admin.post(f"/admin/domains/{domain.id}/burned")
    cleared = admin.post(f"/admin/domains/{domain.id}/unburned", follow_redirects=True)
    assert "Its health score is still critical" in cleared.get_data(as_text=True)
    assert admin.post("/admin/domains/999999/burned").status_code == 404


def test_admin_replaces_a_healthy_domain_and_the_student_is_emailed(
    admin: Any, session: Session
) -> None:
    provision = _provision(session)
    domain = first_domain(session, provision)
    name = free_name("adminswap")
    response = admin.post(
        f"/admin/domains/{domain.id}/replace", data={"name": f"  {name.upper()} "}
    )
    assert response.status_code == 303
    session.expire_all()
    row = session.scalars(select(DomainReplacement)).one()
    assert (row.status, row.payment, row.reason, row.new_domain.name) == (
        "provisioning",
        "included",
        "admin_request",
        name,
    )
    assert session.scalars(select(OutboxMessage.key)).all() == [f"replacement:{row.id}"]
    mail = session.scalars(select(Notification)).one()
    assert mail.recipient == "ann@example.com"
    assert mail.subject == f"Your instructor is replacing your domain {domain.name}"
    assert "It is included in your package." in mail.body
    assert f"http://portal.test/dashboard/replacements/{row.id}" in mail.body
    assert _audit(session) == [
        (
            "domain_replacement_requested",
            {"replacement_id": row.id, "old": domain.name, "new": name, "payment": "included"},
        )
    ]
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    assert f"{domain.name} → {name}" in page and "admin request" in page


@pytest.mark.parametrize(
    "name,message",
    [
        ("", "Enter the new domain."),
        ("foo..com", "foo..com is not a valid domain name"),
        ("takenbyothers.com", "takenbyothers.com cannot be bought: Taken"),
        ("SELF", "is already one of this order&#39;s domains."),
    ],
)
def test_admin_replace_refuses_bad_names_and_writes_nothing(
    admin: Any, session: Session, name: str, message: str
) -> None:
    provision = _provision(session)
    domain = first_domain(session, provision)
    if name == "SELF":
        name = session.scalars(select(Domain.name).where(Domain.id != domain.id)).first()
    page = admin.post(
        f"/admin/domains/{domain.id}/replace", data={"name": name}, follow_redirects=True
    ).get_data(as_text=True)
    assert message in page
    assert session.scalars(select(DomainReplacement)).all() == []
    assert session.scalars(select(Notification)).all() == []
    assert _audit(session) == []


def test_an_admin_replacement_past_the_allowance_waits_for_the_students_payment(
    admin: Any, session: Session
) -> None:
    provision = _provision(session)
    provision.tier.replacements_included = 0
    session.commit()
    domain = first_domain(session, provision)
    page = admin.post(
        f"/admin/domains/{domain.id}/replace",
        data={"name": free_name("laterswap")},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "it starts once the student pays the fee" in page
    session.expire_all()
    row = session.scalars(select(DomainReplacement)).one()
    assert (row.status, row.payment, row.fee_cents) == ("pending_payment", "charged", 2900)
    assert session.scalars(select(OutboxMessage)).all() == []
    mail = session.scalars(select(Notification)).one()
    assert "This replacement costs $29" in mail.body and "starts once you pay it" in mail.body


def test_retry_restarts_only_a_failed_replacement_under_a_new_key(
    admin: Any, session: Session
) -> None:
    provision = _provision(session)
    domain = first_domain(session, provision)
    new = Domain(provision_id=provision.id, name=free_name("retryswap"))
    session.add(new)
    session.flush()
    row = DomainReplacement(
        provision_id=provision.id,
        old_domain_id=domain.id,
        new_domain_id=new.id,
        reason="admin",
        payment="included",
        status="provisioning",
        paid_at=utcnow(),
    )
    session.add(row)
    session.commit()
    refused = admin.post(f"/admin/replacements/{row.id}/retry", follow_redirects=True)
    assert "Only a stopped (failed) replacement can be retried." in refused.get_data(as_text=True)
    assert session.scalars(select(OutboxMessage)).all() == []

    row.status, row.status_reason = "failed", "mailboxes: Google could not create them yet."
    row.flow_run_id = "5f0c1a52-0000-4000-8000-000000000001"  # the run that failed
    session.commit()
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    assert f'action="/admin/replacements/{row.id}/retry"' in page
    admin.post(f"/admin/replacements/{row.id}/retry")
    session.expire_all()
    row = session.get(DomainReplacement, row.id)
    # The failed run is forgotten: the watchdog judges the new start, never retries the old run.
    assert (row.status, row.status_reason, row.flow_run_id) == ("provisioning", None, None)
    [message] = session.scalars(select(OutboxMessage)).all()
    assert message.key == f"restart:replacement:{row.id}:1"
    assert message.payload == {
        "deployment": "replace-domain/on-demand",
        "parameters": {"replacement_id": row.id},
    }
    assert _audit(session)[-1] == (
        "replacement_retried",
        {"replacement_id": row.id, "key": message.key},
    )
    assert admin.post("/admin/replacements/999999/retry").status_code == 404


def _tier_form(**fields: str) -> dict[str, str]:
    return {
        "name": "Pro",
        "slug": "pro",
        "domain_count": "7",
        "mailboxes_per_domain": "2",
        "setup": "199",
        "monthly": "99",
        "replacements_included": "2",
        "replacement_fee": "19.50",
        "active": "y",
        **fields,
    }


def test_tier_replacement_settings_are_saved_and_explained(admin: Any, session: Session) -> None:
    form = admin.get("/admin/tiers/new").get_data(as_text=True)
    assert "Included replacements per 30 days" in form
    assert "each further one costs the fee, charged to the student's card on file" in form
    assert admin.post("/admin/tiers/new", data=_tier_form()).status_code == 303
    tier = session.scalars(select(Tier).where(Tier.slug == "pro")).one()
    assert (tier.replacements_included, tier.replacement_fee_cents) == (2, 1950)
    edit = admin.get(f"/admin/tiers/{tier.id}/edit").get_data(as_text=True)
    assert 'name="replacement_fee" required type="text" value="19.50"' in edit
    free = _tier_form(replacements_included="0", replacement_fee="0")
    assert admin.post(f"/admin/tiers/{tier.id}/edit", data=free).status_code == 303
    session.expire_all()
    tier = session.get(Tier, tier.id)
    assert (tier.replacements_included, tier.replacement_fee_cents) == (0, 0)
    row = session.scalars(select(AuditLog).where(AuditLog.action == "tier_updated")).one()
    assert row.details["before"]["replacement_fee_cents"] == 1950
    assert row.details["after"]["replacements_included"] == 0


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("replacements_included", "13", "Enter 0 to 12."),
        ("replacements_included", "-1", "Enter 0 to 12."),
        ("replacements_included", "", "This field is required."),
        ("replacement_fee", "1000.01", "Enter $0 to $1,000."),
        ("replacement_fee", "-5", "Enter an amount of zero or more."),
        ("replacement_fee", "", "This field is required."),
    ],
)
def test_tier_replacement_settings_refuse_bad_input(
    admin: Any, session: Session, field: str, value: str, message: str
) -> None:
    starter = tiers(session)["starter"]
    session.commit()
    before = (starter.replacements_included, starter.replacement_fee_cents)
    data = _tier_form(slug="starter", domain_count="3", setup="97", monthly="47", **{field: value})
    response = admin.post(f"/admin/tiers/{starter.id}/edit", data=data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    session.expire_all()
    kept = session.get(Tier, starter.id)
    assert (kept.replacements_included, kept.replacement_fee_cents) == before
