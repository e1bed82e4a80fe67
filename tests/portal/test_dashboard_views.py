"""Student pages after payment: progress (JSON and HTML), dashboard, refresh, password, billing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.db import utcnow
from core.models import AuditLog
from core.models import Mailbox
from core.models import OutboxMessage
from core.models import Provision
from portal import outbox_sender
from tests.factories import add_snapshots
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.portal import prefect_support
from tests.portal.helpers import signed_in


def test_progress_json_for_a_paid_order_just_started(
    client: Any, ann: Any, session: Session
) -> None:
    make_provision(session, ann, status="provisioning", paid_at=utcnow())
    session.commit()
    data = client.get("/progress.json").json
    assert data["status"] == "provisioning"
    assert [s["key"] for s in data["steps"]][:3] == [
        "zapmail_workspace",
        "buy_domains",
        "wait_domains",
    ]
    assert all(s["status"] == "pending" for s in data["steps"])
    # The bar counts steps: nothing done yet is 0 of 12, whatever time has passed.
    assert (data["done"], data["total"], data["percent"]) == (0, 12, 0)
    assert data["remaining_s"] > 3600  # the waits for domains and mailboxes dominate
    assert data["remaining_slow_s"] > data["remaining_s"]
    assert "setup continues without you" in data["note"]
    page = client.get("/progress").get_data(as_text=True)
    assert "0 of 12 steps done" in page and "%" not in page.split("<main", 1)[1]


def test_progress_json_follows_the_step_mirror(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(
        session, ann, status="provisioning", paid_at=utcnow() - timedelta(minutes=40)
    )
    set_steps(
        session,
        provision,
        {
            "zapmail_workspace": "completed",
            "buy_domains": "completed",
            "wait_domains": "completed",
            "dmarc": "completed",
            "forwarding": "completed",
            "mailboxes": "running",
        },
    )
    session.commit()
    data = client.get("/progress.json").json
    assert data["done"] == 5 and data["total"] == 12
    assert data["current"] == "Create mailboxes"
    assert data["percent"] == int(100 * 5 / 12)  # by steps, as the bar's label says
    assert data["elapsed_s"] >= 40 * 60


def test_progress_json_explains_a_failure_in_plain_words(
    client: Any, ann: Any, session: Session
) -> None:
    provision = make_provision(session, ann, status="failed", paid_at=utcnow(), remedy="refund")
    set_steps(
        session,
        provision,
        {"zapmail_workspace": "completed", "buy_domains": "failed"},
        error_message="We could not complete your domain purchase. Our team has been notified.",
    )
    session.commit()
    data = client.get("/progress.json").json
    assert data["failed_step"] == "Buy your domains"
    assert "Our team has been notified" in data["failed_message"]
    assert "refund" in data["remedy"]
    assert "ZapmailServerError" not in str(data)  # the technical detail is for admins only
    page = client.get("/progress").get_data(as_text=True)
    assert "We could not complete your domain purchase." in page


def test_progress_json_is_cheap(app: Flask, client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="provisioning", paid_at=utcnow())
    set_steps(session, provision, {"zapmail_workspace": "completed"})
    session.commit()
    engine = app.extensions["portal_db"].engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        response = client.get("/progress.json")
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    # The signed-in user, the provision, its steps.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 3


@pytest.mark.usefixtures("ann")
def test_progress_without_an_order_sends_to_the_wizard(client: Any) -> None:
    assert client.get("/progress").headers["Location"] == "/wizard/"
    assert client.get("/progress.json").status_code == 404


def test_active_student_is_routed_to_the_dashboard(client: Any, ann: Any, session: Session) -> None:
    make_provision(session, ann, status="active")
    session.commit()
    assert client.get("/").headers["Location"] == "/dashboard"
    assert client.get("/progress").status_code == 200  # still reachable, shows 100 %
    assert client.get("/progress.json").json["percent"] == 100


def test_dashboard_shows_domains_charts_and_a_verdict(
    client: Any, ann: Any, session: Session
) -> None:
    provision = make_provision(
        session,
        ann,
        status="active",
        activated_at=utcnow(),
        heyreach_list_id=4242,
        heyreach_lead_count=17,
        plusvibe_client_email="ann@plusvibe.test",
    )
    add_snapshots(session, provision, days=20)
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 6
    assert "tim.keen@tryann0.com" in page
    assert "Ready to send" in page
    assert "DNS ok" in page and "DMARC ok" in page
    assert "Open list #4242" in page and ">17<" in page
    assert "ann@plusvibe.test" in page
    assert "Show password" not in page  # no password stored yet


def test_dashboard_says_not_yet_with_days_left(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=5)
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Not yet: 10 days of warmup left." in page


def test_dashboard_flags_at_risk_mailboxes(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=20)
    box = session.scalars(select(Mailbox)).first()
    assert box is not None
    box.health_label = "burned"
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert "At risk" in page and "Burned" in page
    assert "1 mailbox at risk" in page


def test_mailbox_page_is_scoped_to_its_owner(client: Any, ann: Any, session: Session) -> None:
    mine = make_provision(session, ann, status="active")
    bob = make_user(session, "bob@example.com")
    theirs = make_provision(session, bob, status="active")
    session.commit()
    own = [m.id for d in mine.domains for m in d.mailboxes]
    other = [m.id for d in theirs.domains for m in d.mailboxes]
    assert client.get(f"/dashboard/mailboxes/{own[0]}").status_code == 200
    assert client.get(f"/dashboard/mailboxes/{other[0]}").status_code == 404


def test_password_is_revealed_only_on_request_and_audited(
    app: Flask, client: Any, ann: Any, session: Session
) -> None:
    box = SecretBox.from_settings(app.extensions["settings"])
    make_provision(
        session,
        ann,
        status="active",
        plusvibe_client_email="ann@pv.test",
        plusvibe_client_password_enc=box.seal("S3cret-pass!"),
    )
    session.commit()
    assert "S3cret-pass!" not in client.get("/dashboard").get_data(as_text=True)
    assert client.get("/dashboard/plusvibe-password").status_code == 405
    page = client.post("/dashboard/plusvibe-password").get_data(as_text=True)
    assert "S3cret-pass!" in page
    row = session.scalars(select(AuditLog).where(AuditLog.target_type == "provision")).one()
    assert (row.action, row.target_type, row.actor_id) == (
        "plusvibe_password_revealed",
        "provision",
        ann.id,
    )
    assert "S3cret" not in str(row.details)


@pytest.mark.prefect
def test_refresh_starts_one_run_per_cooldown(
    app_factory: Any, portal_prefect: str, session: Session
) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    user = make_user(session, "ann@example.com")
    provision = make_provision(session, user, status="active")
    session.commit()
    client = signed_in(app, "ann@example.com")
    before = prefect_support.run_ids(portal_prefect, "refresh-dashboard/on-demand")
    first = client.post("/dashboard/refresh", follow_redirects=True)
    assert "Refreshing your numbers" in first.get_data(as_text=True)
    second = client.post("/dashboard/refresh", follow_redirects=True)
    assert "you can refresh again in 10 min" in second.get_data(as_text=True)
    # The run is started by the outbox sender thread after the commit: read Prefect once it has.
    assert outbox_sender.wait_idle(30)
    new = prefect_support.run_ids(portal_prefect, "refresh-dashboard/on-demand") - before
    assert len(new) == 1
    assert prefect_support.read_run(portal_prefect, new.pop()).parameters == {
        "provision_id": provision.id
    }


def test_a_refresh_asked_while_prefect_is_down_is_queued_and_started_later(
    client: Any, ann: Any, session: Session
) -> None:
    # Runs start from the outbox after the commit: Prefect being down (no API URL here) does not
    # lose the request; the row stays unsent with its error, and the watchdog starts it later.
    provision = make_provision(session, ann, status="active")
    session.commit()
    page = client.post("/dashboard/refresh", follow_redirects=True).get_data(as_text=True)
    assert "Refreshing your numbers" in page
    assert outbox_sender.wait_idle()
    session.expire_all()
    row = session.scalars(select(OutboxMessage)).one()
    assert row.key.startswith(f"refresh:{provision.id}:") and row.sent_at is None
    assert row.last_error and row.attempts == 1
    assert session.get(Provision, provision.id).last_refresh_requested_at is not None


def test_billing_opens_the_stripe_customer_portal(
    client: Any, ann: Any, session: Session, portal_sandbox: Any
) -> None:
    import httpx

    customer = httpx.post(
        f"{portal_sandbox.stripe_url}/v1/customers",
        data={"email": "ann@example.com"},
        headers={"Authorization": "Bearer sk_test_sandbox"},
    ).json()["id"]
    make_provision(session, ann, status="active", stripe_customer_id=customer)
    session.commit()
    response = client.post("/billing/portal")
    assert response.status_code == 303
    assert "/stripe/billing/bps_" in response.headers["Location"]


@pytest.mark.usefixtures("ann")
def test_billing_without_a_customer_is_404(client: Any) -> None:
    assert client.post("/billing/portal").status_code == 404
