"""The whole journey in headless Chromium against the sandbox.

A new student signs in, completes the wizard, pays on the sandbox's hosted checkout page and
lands on the progress page; the sandbox's signed webhook makes the provision "provisioning" and
starts exactly one flow run. The provisioning flow is not part of this test yet: its mirror rows
(steps, a failure, the final state, warmup numbers) are written here as the flow would, so the
student sees the failure explained, an admin retries the run, and the student reaches the
dashboard with its charts. Every page is saved under test-artifacts/screenshots/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.db import utcnow
from core.models import AuditLog
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from core.models import WarmupSnapshot
from core.pipeline import PROVISION_STEPS
from tests.e2e.admin_sign_in import first_admin_sign_in
from tests.e2e.journey import buy_through_wizard
from tests.factories import make_user
from tests.factories import tiers
from tests.portal import prefect_support

pytestmark = [pytest.mark.browser, pytest.mark.prefect]


def _wait(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _watch(page: Any, problems: list[str]) -> None:
    """Collect console errors, page errors and 404s of a page."""

    def console(msg: Any) -> None:
        if msg.type == "error":
            problems.append(f"{msg.text} at {msg.location.get('url')}")

    page.on("console", console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status == 404 else None
    )


def _provision(session: Session, user_id: int) -> Provision | None:
    session.expire_all()
    return session.scalar(select(Provision).where(Provision.user_id == user_id))


def _mirror(
    session: Session, provision_id: int, statuses: dict[str, str], *, failed: str | None = None
) -> None:
    """Write the step rows the provisioning flow would write (tasks/records.py)."""
    now = utcnow()
    for position, key in enumerate(PROVISION_STEPS):
        row = session.scalar(
            select(ProvisioningStep).where(
                ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == key
            )
        )
        if row is None:
            row = ProvisioningStep(
                provision_id=provision_id, step_key=key, position=position, attempt=0
            )
            session.add(row)
        status = statuses.get(key, "pending")
        row.status = status
        if status != "pending":
            row.attempt = max(row.attempt or 0, 1)
            row.started_at = row.started_at or now - timedelta(minutes=3)
        row.finished_at = now if status in ("completed", "failed") else None
        if key == failed:
            row.error_message = "We could not create your mailboxes. Our team has been notified and will resume it from this step; you keep everything already set up."
            row.error_detail = "ZapmailServerError: [zapmail] 503 injected fault (request req_1)"
        elif status == "completed":
            row.error_message = row.error_detail = None
    session.commit()


def _finish(app: Any, session: Session, provision_id: int) -> None:
    """Write what a completed provisioning run leaves behind: live domains, mailboxes, stats."""
    box = SecretBox.from_settings(app.extensions["settings"])
    provision = session.get(Provision, provision_id)
    assert provision is not None
    today = utcnow().date()
    for domain_index, domain in enumerate(
        session.scalars(select(Domain).where(Domain.provision_id == provision_id))
    ):
        domain.status = "ACTIVE"
        domain.purchase_state = "purchased"
        domain.zapmail_domain_id = f"dom_{domain.id}"
        domain.dmarc_email = "dmarc@outbound.example"
        for index, username in enumerate(("jordan", "jordan.reyes")):
            mailbox = Mailbox(
                domain_id=domain.id,
                address=f"{username}@{domain.name}",
                username=username,
                first_name="Jordan",
                last_name="Reyes",
                status="ACTIVE",
                warmup_enabled=True,
                plusvibe_account_id=f"pv_{domain.id}_{index}",
            )
            session.add(mailbox)
            session.flush()
            for offset in range(18):
                day = today - timedelta(days=17 - offset)
                session.add(
                    WarmupSnapshot(
                        mailbox_id=mailbox.id,
                        day=day,
                        health=min(100.0, 70 + offset * 1.8 - domain_index),
                        reply_rate=24.0 + (offset * 7 + index * 3) % 9,
                        sent=min(2 + 2 * offset, 30),
                        warmup_sent=min(2 + 2 * offset, 30),
                    )
                )
    provision.plusvibe_client_email = "jordan@clients.plusvibe.test"
    provision.plusvibe_client_password_enc = box.seal("Warm-Up-2026!")
    provision.heyreach_list_id = 731
    provision.heyreach_lead_count = 0
    provision.status = "active"
    provision.activated_at = utcnow()
    session.commit()
    _mirror(session, provision_id, dict.fromkeys(PROVISION_STEPS, "completed"))


def test_student_buys_watches_progress_and_reaches_the_dashboard(
    live_portal: Any, browser: Any, shoot: Any, session: Session, sandbox: Any, portal_prefect: str
) -> None:
    app, url = live_portal
    tiers(session)
    student = make_user(session, "jordan@example.com", name="Jordan Reyes")
    make_user(session, "coach@example.com", role=Role.ADMIN, name="Coach Kim")
    session.commit()
    runs_before = prefect_support.run_ids(portal_prefect, "provision/on-demand")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    # Any CSP violation, script error or failed asset shows up here.
    problems: list[str] = []
    _watch(page, problems)

    chosen = buy_through_wizard(page, url, sandbox, shoot, email="jordan@example.com")
    assert len(chosen) == 3

    # Back on the portal: the progress page.
    page.wait_for_url("**/progress")
    provision = _wait(
        lambda: (
            (p := _provision(session, student.id))
            and p.status == "provisioning"
            and p.current_flow_run_id
            and p
        ),
        what="the provision to start",
    )
    assert provision.stripe_subscription_id and provision.stripe_customer_id and provision.paid_at
    # Exactly one flow run, even though the webhook and the success page both confirmed payment.
    sandbox.control("POST", "/stripe/drain", json={"timeout_s": 10})
    assert prefect_support.run_ids(portal_prefect, "provision/on-demand") - runs_before == {
        provision.current_flow_run_id
    }
    assert prefect_support.read_run(portal_prefect, provision.current_flow_run_id).parameters == {
        "provision_id": provision.id
    }
    deliveries = sandbox.control("GET", "/stripe/deliveries").json()["deliveries"]
    assert any(d["type"] == "checkout.session.completed" and d["ok"] for d in deliveries)
    shoot(page, "07-progress-started")

    # --- Simulated flow mirror (switch to the real provisioning flow once it exists) ---
    done = ("zapmail_workspace", "buy_domains", "wait_domains", "dmarc", "forwarding")
    _mirror(session, provision.id, {**dict.fromkeys(done, "completed"), "mailboxes": "running"})
    # The page polls progress.json every 3 s (page.wait_for_function would need eval, which our CSP forbids).
    page.locator("#progress-done", has_text="5 of 12 steps done").wait_for(timeout=10000)
    assert "Create mailboxes" in page.inner_text("li.tl-running")
    shoot(page, "08-progress-running")

    # An injected fault fails the run at the mailbox step.
    _mirror(
        session,
        provision.id,
        {**dict.fromkeys(done, "completed"), "mailboxes": "failed"},
        failed="mailboxes",
    )
    prefect_support.fail_run(portal_prefect, provision.current_flow_run_id)
    row = _provision(session, student.id)
    assert row is not None
    row.status = "failed"
    row.status_reason = "Setup stopped at the mailbox step."
    session.commit()
    page.wait_for_selector("#progress-failure:not(.hidden)", timeout=10000)
    assert "We could not create your mailboxes." in page.inner_text("#progress-failure")
    assert "ZapmailServerError" not in page.content()
    shoot(page, "09-progress-failed")

    # The admin retries it from the cohort.
    admin = browser.new_context(viewport={"width": 1400, "height": 900})
    admin_page = admin.new_page()
    admin_page.set_default_timeout(15000)
    _watch(admin_page, problems)
    admin_page.on("dialog", lambda dialog: dialog.accept())
    first_admin_sign_in(admin_page, url, "coach@example.com")  # password, then 2FA enrolment
    admin_page.wait_for_url("**/admin/cohort")
    assert "jordan@example.com" in admin_page.inner_text("table.cohort")
    assert "Create mailboxes" in admin_page.inner_text("table.cohort")
    shoot(admin_page, "10-admin-cohort")
    admin_page.click("tr:has-text('jordan@example.com') a:has-text('Open')")
    admin_page.wait_for_url("**/admin/provisions/*")
    assert "503 injected fault" in admin_page.inner_text("body")
    shoot(admin_page, "11-admin-provision-failed")
    admin_page.click("button:has-text('Retry from last good step')")
    admin_page.wait_for_selector(".flash-success")
    assert "Retry scheduled" in admin_page.inner_text(".flash-success")
    run = prefect_support.read_run(portal_prefect, provision.current_flow_run_id)
    assert (run.state.type.value, run.state.name) == ("SCHEDULED", "AwaitingRetry")
    retried = _provision(session, student.id)
    assert retried is not None and retried.status == "provisioning"
    session.expire_all()
    on_orders = select(AuditLog.action).where(AuditLog.target_type == "provision")
    assert session.scalars(on_orders).all() == ["provision_retried"]  # sign-ins are on users
    shoot(admin_page, "12-admin-provision-retried")

    # The resumed run finishes (simulated): the student's page reaches 100 % and opens the dashboard.
    _finish(app, session, provision.id)
    page.wait_for_url("**/dashboard", timeout=15000)
    page.wait_for_selector("svg.chart")
    assert page.locator("svg.chart").count() == 6
    assert page.locator("svg.chart polyline.chart-health").count() == 6
    assert "Ready to send" in page.inner_text(".verdict")
    shoot(page, "13-dashboard")
    page.click("button:has-text('Show password')")
    page.wait_for_selector("#plusvibe-password")
    assert page.inner_text("#plusvibe-password") == "Warm-Up-2026!"
    shoot(page, "14-dashboard-password")
    page.locator("a.mono").first.click()
    page.wait_for_url("**/dashboard/mailboxes/*")
    shoot(page, "15-mailbox")

    # The admin's views of the finished provision, and the tier list.
    admin_page.goto(f"{url}/admin/cohort")
    shoot(admin_page, "16-admin-cohort-active")
    admin_page.goto(f"{url}/admin/tiers")
    shoot(admin_page, "17-admin-tiers")
    admin.close()
    context.close()
    # The sandbox's checkout page has no favicon; everything else must load cleanly.
    assert [p for p in problems if f"{sandbox.url}/favicon.ico" not in p] == []
