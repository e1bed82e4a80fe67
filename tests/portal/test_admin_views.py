"""Admin: tiers with Stripe prices, the cohort, provision detail, retry, cancel and refund."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AuditLog
from core.models import OutboxMessage
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from core.models import Tier
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.factories import tiers
from tests.portal import prefect_support
from tests.portal.helpers import paid_order
from tests.portal.helpers import signed_in

STRIPE_AUTH = {"Authorization": "Bearer sk_test_sandbox"}


def _stripe(sandbox: Any, path: str) -> Any:
    return httpx.get(f"{sandbox.stripe_url}/v1/{path}", headers=STRIPE_AUTH).json()


def _admin_client(app: Flask, session: Session) -> Any:
    make_user(session, "boss@example.com", role=Role.ADMIN, name="Boss")
    session.commit()
    return signed_in(app, "boss@example.com")


@pytest.fixture
def admin(app: Flask, session: Session) -> Any:
    """A signed-in admin on the app without Prefect."""
    return _admin_client(app, session)


def _actions(session: Session) -> list[str]:
    # Actions on packages and orders (sign-ins are audited too, on users).
    kinds = ("tier", "provision")
    return list(
        session.scalars(
            select(AuditLog.action).where(AuditLog.target_type.in_(kinds)).order_by(AuditLog.id)
        )
    )


def test_create_tier_creates_stripe_product_and_prices(
    admin: Any, session: Session, portal_sandbox: Any
) -> None:
    response = admin.post(
        "/admin/tiers/new",
        data={
            "name": "Pro",
            "slug": "pro",
            "domain_count": 7,
            "mailboxes_per_domain": 2,
            "setup": "199",
            "monthly": "99.50",
            "replacements_included": "1",
            "replacement_fee": "29",
            "active": "y",
        },
    )
    assert response.status_code == 303
    tier = session.scalars(select(Tier).where(Tier.slug == "pro")).one()
    assert (tier.setup_cents, tier.monthly_cents) == (19900, 9950)
    monthly = _stripe(portal_sandbox, f"prices/{tier.stripe_monthly_price_id}")
    setup = _stripe(portal_sandbox, f"prices/{tier.stripe_setup_price_id}")
    assert monthly["unit_amount"] == 9950 and monthly["recurring"]["interval"] == "month"
    assert setup["unit_amount"] == 19900 and setup["type"] == "one_time"
    assert monthly["product"] == tier.stripe_product_id
    assert _actions(session) == ["tier_created"]


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("mailboxes_per_domain", "6", "Zapmail allows 1 to 5."),
        ("monthly", "0", "The monthly fee must be more than zero."),
        ("setup", "ten", "Enter an amount such as 97 or 97.50."),
        ("setup", "1e30", "Enter an amount such as 97 or 97.50."),
        ("monthly", "1000000", "Stripe accepts at most $999,999.99."),
        ("monthly", "", "This field is required."),
        ("slug", "Bad Slug", "Use lower-case letters"),
    ],
)
def test_tier_form_rejects_bad_input_and_writes_nothing(
    admin: Any, session: Session, field: str, value: str, message: str
) -> None:
    data = {
        "name": "Pro",
        "slug": "pro",
        "domain_count": 7,
        "mailboxes_per_domain": 2,
        "setup": "199",
        "monthly": "99",
        "replacements_included": "1",
        "replacement_fee": "29",
        "active": "y",
    }
    data[field] = value
    response = admin.post("/admin/tiers/new", data=data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert session.scalar(select(Tier).where(Tier.slug == "pro")) is None


def test_repricing_creates_a_new_price_and_archives_the_old(
    admin: Any, session: Session, portal_sandbox: Any
) -> None:
    admin.post(
        "/admin/tiers/new",
        data={
            "name": "Pro",
            "slug": "pro",
            "domain_count": 7,
            "mailboxes_per_domain": 2,
            "setup": "199",
            "monthly": "99",
            "replacements_included": "1",
            "replacement_fee": "29",
            "active": "y",
        },
    )
    tier = session.scalars(select(Tier).where(Tier.slug == "pro")).one()
    old_monthly, old_setup = tier.stripe_monthly_price_id, tier.stripe_setup_price_id
    form = admin.get(f"/admin/tiers/{tier.id}/edit").get_data(as_text=True)
    assert 'name="setup" required type="text" value="199.00"' in form
    assert 'name="monthly" required type="text" value="99.00"' in form
    response = admin.post(
        f"/admin/tiers/{tier.id}/edit",
        data={
            "name": "  Pro Plus ",
            "slug": "pro",
            "domain_count": 7,
            "mailboxes_per_domain": 2,
            "setup": "199",
            "monthly": "109",
            "replacements_included": "1",
            "replacement_fee": "29",
            "active": "y",
        },
    )
    assert response.status_code == 303
    session.expire_all()
    tier = session.get(Tier, tier.id)
    assert tier is not None
    assert (tier.name, tier.monthly_cents) == ("Pro Plus", 10900)
    assert tier.stripe_setup_price_id == old_setup  # unchanged amount, same price
    assert tier.stripe_monthly_price_id != old_monthly
    assert _stripe(portal_sandbox, f"prices/{tier.stripe_monthly_price_id}")["unit_amount"] == 10900
    assert _stripe(portal_sandbox, f"prices/{old_monthly}")["active"] is False
    row = session.scalars(select(AuditLog).where(AuditLog.action == "tier_updated")).one()
    assert row.details["archived_prices"] == [old_monthly]


def test_a_sold_tier_cannot_change_size(admin: Any, session: Session) -> None:
    student = make_user(session, "ann@example.com")
    provision = make_provision(session, student, status="active")
    session.commit()
    tier = provision.tier
    response = admin.post(
        f"/admin/tiers/{tier.id}/edit",
        data={
            "name": tier.name,
            "slug": tier.slug,
            "domain_count": 4,
            "mailboxes_per_domain": 2,
            "setup": "97",
            "monthly": "47",
            "replacements_included": "1",
            "replacement_fee": "29",
            "active": "y",
        },
    )
    assert response.status_code == 400
    assert "cannot change" in response.get_data(as_text=True)
    session.expire_all()
    kept = session.get(Tier, tier.id)
    assert kept is not None and (kept.domain_count, kept.monthly_cents) == (3, 4700)
    assert _actions(session) == []


def test_deactivate_and_reorder_tiers(admin: Any, session: Session) -> None:
    rows = tiers(session)
    session.commit()
    admin.post(f"/admin/tiers/{rows['growth'].id}/toggle")
    admin.post(f"/admin/tiers/{rows['scale'].id}/move", data={"direction": "up"})
    session.expire_all()
    ordered = list(session.scalars(select(Tier.slug).order_by(Tier.sort_order)))
    assert ordered == ["starter", "scale", "growth"]
    assert session.scalars(select(Tier.active).where(Tier.slug == "growth")).one() is False
    assert _actions(session) == ["tier_deactivated", "tier_moved"]
    assert (
        admin.post(
            f"/admin/tiers/{rows['scale'].id}/move", data={"direction": "sideways"}
        ).status_code
        == 400
    )


def test_cohort_lists_students_with_step_error_and_readiness(admin: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com", name="Ann")
    failed = make_provision(session, ann, status="failed", paid_at=utcnow())
    set_steps(
        session,
        failed,
        {"zapmail_workspace": "completed", "buy_domains": "failed"},
        error_detail="ZapmailServerError: wallet short",
    )
    bob = make_user(session, "bob@example.com", name="Bob")
    make_provision(session, bob, status="active", activated_at=utcnow())
    make_user(session, "cid@example.com", name="Cid")
    session.commit()
    page = admin.get("/admin/cohort").get_data(as_text=True)
    for email in ("ann@example.com", "bob@example.com", "cid@example.com"):
        assert email in page
    assert "Buy your domains" in page and "wallet short" in page
    assert "Not yet" in page  # Bob's mailboxes have just started warmup
    only_failed = admin.get("/admin/cohort?status=failed").get_data(as_text=True)
    assert "ann@example.com" in only_failed and "bob@example.com" not in only_failed
    # The status counts cover the whole cohort, not just the filtered rows.
    assert 'href="/admin/cohort?status=active"' in only_failed
    attention = admin.get("/admin/cohort?attention=1").get_data(as_text=True)
    assert "ann@example.com" in attention and "cid@example.com" not in attention
    by_email = admin.get("/admin/cohort?sort=email&dir=desc").get_data(as_text=True)
    assert (
        by_email.index("cid@example.com")
        < by_email.index("bob@example.com")
        < by_email.index("ann@example.com")
    )
    search = admin.get("/admin/cohort?q=bob").get_data(as_text=True)
    assert "bob@example.com" in search and "ann@example.com" not in search


def test_provision_detail_shows_steps_and_vendor_ids(admin: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(
        session, ann, status="failed", zapmail_workspace_id="ws_123", heyreach_list_id=99
    )
    set_steps(session, provision, {"zapmail_workspace": "completed", "buy_domains": "failed"})
    session.commit()
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    assert (
        "ws_123" in page
        and "ZapmailServerError: 500 boom" in page
        and "Retry from last good step" in page
    )
    assert admin.get("/admin/provisions/999999").status_code == 404


def test_the_step_log_gives_seconds_durations_and_attempts_only_where_made(
    admin: Any, session: Session
) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(session, ann, status="provisioning")
    set_steps(
        session,
        provision,
        {"zapmail_workspace": "completed", "buy_domains": "completed", "wait_domains": "waiting"},
    )
    start = utcnow().replace(microsecond=0) - timedelta(minutes=10)
    steps = {
        s.step_key: s
        for s in session.scalars(
            select(ProvisioningStep).where(ProvisioningStep.provision_id == provision.id)
        )
    }
    steps["zapmail_workspace"].started_at = start
    steps["zapmail_workspace"].finished_at = start + timedelta(seconds=7)
    steps["buy_domains"].started_at = start + timedelta(seconds=8)
    steps["buy_domains"].finished_at = start + timedelta(seconds=8 + 125)
    steps["buy_domains"].attempt = 2
    steps["wait_domains"].started_at = start + timedelta(seconds=140)
    steps["wait_domains"].attempt = 0  # a wait polls; it makes no attempts
    session.commit()

    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    log = page[page.index("Step log") : page.index("Domains and mailboxes")]
    rows = [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", log, re.S)[1:]
    ]
    # Step, status, started, took, attempt, error.
    workspace, buy, wait = rows[0], rows[1], rows[2]
    assert workspace[2] == start.strftime("%Y-%m-%d %H:%M:%S") and workspace[3] == "7s"
    assert buy[3] == "2m 05s" and buy[4] == "2 (retried)"
    assert wait[3].endswith("so far") and wait[4] == "—"
    assert "Attempt" in log  # the column is there, only empty for the wait


@pytest.mark.prefect
def test_retry_reschedules_the_failed_run_and_is_audited(
    app_factory: Any, portal_prefect: str, session: Session
) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    admin = _admin_client(app, session)
    ann = make_user(session, "ann@example.com")
    provision = make_provision(
        session, ann, status="failed", status_reason="Setup stopped", remedy="refund"
    )
    run_id = prefect_support.new_run(
        portal_prefect, "provision/on-demand", {"provision_id": provision.id}
    )
    prefect_support.fail_run(portal_prefect, run_id)
    provision.current_flow_run_id = run_id
    session.commit()
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    assert f"/runs/flow-run/{run_id}" in page and "Failed" in page
    response = admin.post(f"/admin/provisions/{provision.id}/retry", follow_redirects=True)
    assert "Retry scheduled" in response.get_data(as_text=True)
    run = prefect_support.read_run(portal_prefect, run_id)
    assert (run.state.type.value, run.state.name) == ("SCHEDULED", "AwaitingRetry")
    session.expire_all()
    fresh = session.get(Provision, provision.id)
    assert fresh is not None
    assert (fresh.status, fresh.status_reason, fresh.remedy) == ("provisioning", None, None)
    row = session.scalars(select(AuditLog).where(AuditLog.target_type == "provision")).one()
    assert (row.action, row.details["flow_run_id"]) == ("provision_retried", run_id)


@pytest.mark.prefect
def test_retry_refuses_a_run_that_is_still_active(
    app_factory: Any, portal_prefect: str, session: Session
) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    admin = _admin_client(app, session)
    ann = make_user(session, "ann@example.com")
    provision = make_provision(session, ann, status="failed")
    provision.current_flow_run_id = prefect_support.new_run(
        portal_prefect, "provision/on-demand", {"provision_id": provision.id}
    )
    session.commit()
    page = admin.post(f"/admin/provisions/{provision.id}/retry", follow_redirects=True).get_data(
        as_text=True
    )
    assert "still scheduled" in page
    session.expire_all()
    assert session.get(Provision, provision.id).status == "failed"
    assert _actions(session) == []


def test_retry_of_a_healthy_provision_is_refused(admin: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(session, ann, status="active")
    session.commit()
    page = admin.post(f"/admin/provisions/{provision.id}/retry", follow_redirects=True).get_data(
        as_text=True
    )
    assert "Only a failed provisioning or upgrade can be retried." in page


def test_cancel_an_unpaid_order_releases_its_domains(admin: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(session, ann, status="pending_payment")
    session.commit()
    admin.post(f"/admin/provisions/{provision.id}/cancel", data={"note": "duplicate account"})
    session.expire_all()
    fresh = session.get(Provision, provision.id)
    assert fresh is not None and fresh.status == "cancelled" and fresh.domains == []
    row = session.scalars(select(AuditLog).where(AuditLog.target_type == "provision")).one()
    assert row.details == {"note": "duplicate account"}


@pytest.mark.prefect
def test_refund_and_cancel_a_failed_provision(
    app_factory: Any, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    make_user(session, "ann@example.com")
    session.commit()
    student = signed_in(app, "ann@example.com")
    paid_order(student, session, portal_sandbox, "refundco")
    provision = session.scalars(select(Provision)).one()
    provision.status = "failed"
    provision.remedy = "refund"
    session.commit()
    admin = _admin_client(app, session)
    # No decision about the order: refused before any money moves (issue 13: a refund without
    # "cancel" used to leave the subscription billing and the order retryable by default).
    undecided = admin.post(
        f"/admin/provisions/{provision.id}/refund",
        data={"amount": "20", "reason": "goodwill"},
        follow_redirects=True,
    )
    assert "Choose what happens to the order" in undecided.get_data(as_text=True)
    assert portal_sandbox.ledger(vendor="stripe", kind="refund") == []
    partial = admin.post(
        f"/admin/provisions/{provision.id}/refund",
        data={"amount": "20", "reason": "goodwill", "cancel_subscription": "keep"},
        follow_redirects=True,
    )
    assert "Refunded $20." in partial.get_data(as_text=True)
    session.expire_all()
    kept = session.get(Provision, provision.id)
    assert kept is not None and kept.status == "failed"
    assert _stripe(portal_sandbox, f"subscriptions/{kept.stripe_subscription_id}")["status"] == (
        "active"
    )
    full = admin.post(
        f"/admin/provisions/{provision.id}/refund",
        data={"amount": "", "reason": "setup failed for good", "cancel_subscription": "cancel"},
        follow_redirects=True,
    )
    assert "Refunded $124." in full.get_data(as_text=True)  # what was left of 144
    refunds = portal_sandbox.ledger(vendor="stripe", kind="refund")
    assert sorted(int(r["amount"]) for r in refunds) == [2000, 12400]
    session.expire_all()
    fresh = session.get(Provision, provision.id)
    assert fresh is not None and fresh.status == "cancelled"
    sub = _stripe(portal_sandbox, f"subscriptions/{fresh.stripe_subscription_id}")
    assert sub["status"] == "canceled"
    assert _actions(session) == ["refund", "refund", "provision_cancelled"]
    decisions = [
        row.details["order"]
        for row in session.scalars(
            select(AuditLog).where(AuditLog.action == "refund").order_by(AuditLog.id)
        )
    ]
    assert decisions == ["keep", "cancel"]
    # Cancelled for good: the release run is queued under the new generation's key and the
    # order can no longer be retried (cancelled is terminal).
    assert session.scalar(
        select(OutboxMessage).where(OutboxMessage.key == f"cancel:{provision.id}:1")
    )
    retried = admin.post(f"/admin/provisions/{provision.id}/retry", follow_redirects=True)
    assert "Only a failed provisioning or upgrade can be retried" in retried.get_data(as_text=True)
    too_much = admin.post(
        f"/admin/provisions/{provision.id}/refund",
        data={"amount": "1", "reason": "again", "cancel_subscription": "keep"},
        follow_redirects=True,
    )
    assert "Stripe refused the refund" in too_much.get_data(as_text=True)


def test_refund_needs_a_failed_order(admin: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(
        session, ann, status="active", stripe_checkout_session_id="cs_test_x"
    )
    session.commit()
    page = admin.post(
        f"/admin/provisions/{provision.id}/refund", data={"reason": "x"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Refunds are for orders whose setup failed" in page
