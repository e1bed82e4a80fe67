"""The journey on the real pipeline: a real worker runs the real provisioning flow.

A student buys in the browser; the sandbox's signed webhook starts the provisioning
deployment; a fault injected at Zapmail's mailbox endpoint makes the real run fail at that
step, and the student sees it explained; an admin retries from the portal once the fault is
gone; the run resumes from the failed step, the student's progress reaches the dashboard, and a
refresh fills the warmup charts. The ledger shows every domain charged once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Provision
from core.models import Role
from core.models import WarmupSnapshot
from tests.e2e.admin_sign_in import first_admin_sign_in
from tests.e2e.journey import buy_through_wizard
from tests.factories import make_user
from tests.factories import tiers

pytestmark = [pytest.mark.browser, pytest.mark.prefect]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _provision(session: Session, user_id: int) -> Provision | None:
    session.expire_all()
    return session.scalar(select(Provision).where(Provision.user_id == user_id))


def test_real_flow_fails_on_a_fault_is_retried_by_an_admin_and_reaches_the_dashboard(
    real_portal: Any, browser: Any, shoot: Any, session: Session, sandbox: Any
) -> None:
    _app, url = real_portal
    tiers(session)
    student = make_user(session, "riley@example.com", name="Riley Stone")
    make_user(session, "coach@example.com", role=Role.ADMIN, name="Coach Kim")
    session.commit()
    # Zapmail refuses to create mailboxes until the fault is cleared (a 4xx: no automatic retry).
    sandbox.add_fault(
        vendor="zapmail", method="POST", path="/v2/mailboxes", kind="status", status=400, times=None
    )

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20000)
    chosen = buy_through_wizard(
        page, url, sandbox, shoot, email="riley@example.com", prefix="real-"
    )
    page.wait_for_url("**/progress")

    # The real run buys the domains, then fails at the mailbox step; the page explains it.
    page.wait_for_selector("#progress-failure:not(.hidden)", timeout=120000)
    assert "We could not create your mailboxes." in page.inner_text("#progress-failure")
    shoot(page, "real-07-progress-failed")
    failed = _wait(
        lambda: (p := _provision(session, student.id)) and p.status == "failed" and p,
        30,
        "the run's failure hook to mark the provision failed",
    )
    assert failed.status_reason.startswith("mailboxes")
    assert sorted(e["item"] for e in sandbox.ledger(kind="domain_purchase")) == sorted(chosen)

    # The fault is fixed; an admin retries from the provision page.
    sandbox.clear_faults()
    admin = browser.new_context(viewport={"width": 1400, "height": 900})
    admin_page = admin.new_page()
    admin_page.set_default_timeout(20000)
    admin_page.on("dialog", lambda dialog: dialog.accept())
    first_admin_sign_in(admin_page, url, "coach@example.com")  # password, then 2FA enrolment
    admin_page.wait_for_url("**/admin/cohort")
    admin_page.click("tr:has-text('riley@example.com') a:has-text('Open')")
    admin_page.wait_for_url("**/admin/provisions/*")
    shoot(admin_page, "real-11-admin-provision-failed")
    admin_page.click("button:has-text('Retry from last good step')")
    admin_page.wait_for_selector(".flash-success")

    # The same run resumes at the mailbox step and finishes: the student lands on the dashboard.
    page.wait_for_url("**/dashboard", timeout=180000)
    active = _provision(session, student.id)
    assert active is not None and active.status == "active"
    purchases = Counter(e["item"] for e in sandbox.ledger(kind="domain_purchase"))
    assert purchases == Counter(chosen), "each domain charged exactly once across both attempts"
    shoot(page, "real-13-dashboard")

    # A refresh runs the real dashboard flow; the warmup charts appear.
    sandbox.advance(2 * 86400)
    page.click("button:has-text('Refresh')")
    _wait(
        lambda: session.scalars(
            select(WarmupSnapshot).where(WarmupSnapshot.health.is_not(None))
        ).all(),
        120,
        "the refresh flow to store warmup snapshots",
    )
    _wait(
        lambda: page.reload() or page.locator("svg.chart polyline.chart-health").count() == 6,
        120,
        "warmup health lines in all six charts",
    )
    shoot(page, "real-14-dashboard-charts")
    assert "No warmup data yet" not in page.inner_text("body")
    shoot(page, "real-14-dashboard-charts")
    admin.close()
    context.close()
