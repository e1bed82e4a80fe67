"""Parity pages in headless Chromium: the student's website and DNS panel, the admin's capacity.

A student with a live order reads each domain's record states, score and advice, sets the main
website (a cold domain is refused with the reason) and sees the change being applied; an admin
reads the Zapmail capacity against the waiting orders and enters the next cohort's size, and the
page warns that the wallet and slots will run short.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import CapacitySnapshot
from core.models import Role
from tests.e2e.admin_sign_in import enrol
from tests.e2e.admin_sign_in import password_step
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.test_parity_views import GOOD
from tests.portal.test_parity_views import store_check

pytestmark = [pytest.mark.browser]


def test_student_reads_dns_health_and_sets_the_website_admin_plans_capacity(
    portal: str, browser: Any, shoot: Any, session: Session
) -> None:
    url = portal
    provision = make_provision(session, make_user(session, "web@student.test"), status="active")
    drifted = provision.domains[0]
    store_check(session, drifted, [r for r in GOOD if r["host"] != "_dmarc"], 24)
    make_user(session, "boss@school.test", role=Role.ADMIN)
    session.add(CapacitySnapshot(wallet_cents=10_000, slots_purchased=50, slots_free=20))
    session.commit()

    page = browser.new_context().new_page()
    password_step(page, url, "web@student.test")
    page.wait_for_url(f"{url}/dashboard")
    panel = page.locator("#domain-health")
    assert "Critical (24)" in panel.inner_text()
    assert "No DMARC record: inboxes treat the domain as less trustworthy." in panel.inner_text()
    assert "Not checked yet" in panel.inner_text()
    forwarding = page.locator("#website-forwarding")
    assert "Your cold domains do not forward anywhere" in forwarding.inner_text()

    page.fill("input[name=website]", f"https://www.{drifted.name}")
    with page.expect_navigation():
        page.click("button:has-text('Save website')")
    assert f"{drifted.name} is one of your cold-email domains" in page.inner_text("body")

    page.fill("input[name=website]", "mysite.example")
    with page.expect_navigation():
        page.click("button:has-text('Save website')")
    body = page.inner_text("body")
    assert "Your domains will forward to https://mysite.example/ within a few minutes." in body
    assert "Being applied" in page.locator("#website-forwarding").inner_text()
    shoot(page, "parity-01-dashboard")

    admin = browser.new_context().new_page()
    password_step(admin, url, "boss@school.test")
    enrol(admin)  # an admin's first sign-in enrols the second factor
    admin.goto(f"{url}/admin/cohort")
    capacity = admin.locator("#capacity")
    assert "20 free of 50" in capacity.inner_text()
    assert "The wallet and mailbox slots cover the waiting orders." in capacity.inner_text()
    admin.fill("input[name=next_cohort_size]", "12")
    with admin.expect_navigation():
        admin.click("#capacity button:has-text('Save')")
    text = admin.locator("#capacity").inner_text()
    assert "12 × starter" in text.lower()  # table headers are upper-cased by the CSS
    assert "The wallet ($100) does not cover those and the next cohort of 12" in text
    assert "20 free mailbox slots do not cover those and the next cohort of 12" in text
    shoot(admin, "parity-02-capacity")
