"""Upgrades against the sandbox's Stripe: prorated price change plus a separate setup-fee invoice."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import Provision
from core.models import Tier
from core.models import Upgrade
from core.models import WizardDraft
from portal import outbox_sender
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import tiers
from tests.portal import prefect_support
from tests.portal.helpers import add_found_domains
from tests.portal.helpers import paid_order
from tests.portal.helpers import signed_in

STRIPE_AUTH = {"Authorization": "Bearer sk_test_sandbox"}


@pytest.fixture
def active_student(
    app_factory: Any, portal_prefect: str, session: Session, portal_sandbox: Any
) -> tuple[Flask, Any, Provision]:
    """A student who paid Starter in the sandbox and whose setup finished."""
    make_user(session, "ann@example.com")
    session.commit()
    app = app_factory(prefect_api_url=portal_prefect)
    client = signed_in(app, "ann@example.com")
    paid_order(client, session, portal_sandbox, "upgradeco")
    provision = session.scalars(select(Provision)).one()
    assert provision.status == "provisioning"
    # What the provisioning flow would do at its end.
    provision.status = "active"
    provision.activated_at = utcnow()
    session.commit()
    return app, client, provision


@pytest.mark.prefect
def test_upgrade_charges_the_difference_and_starts_the_upgrade_flow(
    active_student: tuple[Flask, Any, Provision],
    portal_prefect: str,
    session: Session,
    portal_sandbox: Any,
) -> None:
    _app, client, provision = active_student
    page = client.get("/upgrade").get_data(as_text=True)
    assert "Growth" in page and "Scale" in page and "+2</strong> domains" in page
    growth = session.scalars(select(Tier).where(Tier.slug == "growth")).one()
    assert (
        client.post("/upgrade", data={"tier_id": growth.id}).headers["Location"]
        == "/upgrade/domains"
    )
    added = add_found_domains(client, "/upgrade/domains", "upgradeco", 2)
    assert (
        client.post("/upgrade/domains", data={"action": "continue"}).headers["Location"]
        == "/upgrade/review"
    )
    before = prefect_support.run_ids(portal_prefect, "upgrade/on-demand")
    response = client.post("/upgrade/review")
    assert response.headers["Location"] == "/progress"
    # The run is started after the commit by the portal's outbox sender.
    assert outbox_sender.wait_idle()
    session.expire_all()
    upgrade = session.scalars(select(Upgrade)).one()
    assert upgrade.status == "provisioning"
    assert upgrade.fee_paid_at and upgrade.proration_paid_at and upgrade.flow_run_id
    assert prefect_support.run_ids(portal_prefect, "upgrade/on-demand") - before == {
        upgrade.flow_run_id
    }
    assert prefect_support.read_run(portal_prefect, upgrade.flow_run_id).parameters == {
        "upgrade_id": upgrade.id
    }
    fresh = session.get(Provision, provision.id)
    assert fresh is not None
    assert fresh.status == "upgrading"
    assert fresh.tier.slug == "starter"  # the flow changes the tier once it is done
    new = session.scalars(select(Domain.name).where(Domain.upgrade_id == upgrade.id)).all()
    assert sorted(new) == sorted(added)
    fee = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/invoices/{upgrade.stripe_invoice_id}", headers=STRIPE_AUTH
    ).json()
    assert fee["status"] == "paid" and fee["amount_paid"] == 14700 - 9700
    assert fee["metadata"]["upgrade_id"] == str(upgrade.id)
    sub = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/subscriptions/{fresh.stripe_subscription_id}",
        headers=STRIPE_AUTH,
    ).json()
    assert sub["items"]["data"][0]["price"]["id"] == growth.stripe_monthly_price_id
    assert sub["pending_update"] is None
    proration = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/invoices/{upgrade.stripe_proration_invoice_id}",
        headers=STRIPE_AUTH,
    ).json()
    assert proration["billing_reason"] == "subscription_update" and proration["status"] == "paid"


@pytest.mark.prefect
def test_declined_upgrade_changes_nothing(
    active_student: tuple[Flask, Any, Provision],
    portal_prefect: str,
    session: Session,
    portal_sandbox: Any,
) -> None:
    _app, client, provision = active_student
    growth = session.scalars(select(Tier).where(Tier.slug == "growth")).one()
    client.post("/upgrade", data={"tier_id": growth.id})
    add_found_domains(client, "/upgrade/domains", "declineco", 2)
    client.post("/upgrade/domains", data={"action": "continue"})
    portal_sandbox.control(
        "POST", "/stripe/fail_next_payment", json={"count": 2}
    ).raise_for_status()
    before = prefect_support.run_ids(portal_prefect, "upgrade/on-demand")
    page = client.post("/upgrade/review", follow_redirects=True).get_data(as_text=True)
    assert "declined" in page
    session.expire_all()
    upgrade = session.scalars(select(Upgrade)).one()
    assert upgrade.status == "pending_payment"
    assert prefect_support.run_ids(portal_prefect, "upgrade/on-demand") == before
    fresh = session.get(Provision, provision.id)
    assert fresh is not None and fresh.status == "active" and fresh.tier.slug == "starter"


def test_upgrade_needs_an_active_provision(client: Any, auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    assert client.get("/upgrade").status_code == 404
    assert client.get("/upgrade/domains").status_code == 404


def test_a_stopped_paid_upgrade_is_shown_and_blocks_a_second_one(
    client: Any, auth: Any, session: Session
) -> None:
    user = make_user(session, "stalled@example.com")
    provision = make_provision(session, user)
    all_tiers = tiers(session)
    session.add(
        Upgrade(
            provision_id=provision.id,
            from_tier_id=all_tiers["starter"].id,
            to_tier_id=all_tiers["growth"].id,
            status="failed",
            status_reason="mailboxes: Google could not create the mailboxes yet.",
            fee_paid_at=utcnow(),
            proration_paid_at=utcnow(),
        )
    )
    session.commit()
    auth.login("stalled@example.com")

    page = client.get("/dashboard").get_data(as_text=True)
    assert "Upgrade to Growth stopped: Google could not create the mailboxes yet." in page
    assert 'href="/upgrade"' not in page
    assert client.get("/upgrade").status_code == 404


def test_a_package_that_is_not_larger_is_refused_next_to_the_choice(
    client: Any, auth: Any, session: Session
) -> None:
    user = make_user(session, "ann@example.com")
    make_provision(session, user)
    all_tiers = tiers(session)
    session.commit()
    auth.login("ann@example.com")
    for tier_id in (str(all_tiers["starter"].id), "abc", ""):
        response = client.post("/upgrade", data={"tier_id": tier_id})
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert '<p class="error" role="alert">Choose one of the larger packages.</p>' in page
    assert session.scalars(select(WizardDraft)).all() == []
    growth = all_tiers["growth"].id
    assert client.post("/upgrade", data={"tier_id": growth}).headers["Location"] == (
        "/upgrade/domains"
    )
    # The choice is kept: the page shows it checked when the student comes back.
    assert f'value="{growth}" checked' in client.get("/upgrade").get_data(as_text=True)
    before = session.scalars(select(WizardDraft.data)).one()
    response = client.post("/upgrade/domains", data={"action": "buy"}, follow_redirects=True)
    assert "That action is not available here." in response.get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(WizardDraft.data)).one() == before
