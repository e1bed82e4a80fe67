"""Replacing a burned domain in headless Chromium: the admin marks it, the student replaces it.

An admin signs in (with the second step), marks one of a student's domains burned on the order's
page. The student then sees it on their dashboard as burned by their instructor, opens "Replace
this domain", reads what will happen and that the replacement is included, picks a new domain
from the brand suggestions (live availability from the sandbox's Zapmail), confirms, and lands
on the replacement's progress page. No flow runs here: the run stays queued in the outbox, and
the step mirror rows are written as the replace-domain flow would; the page follows them by
polling. Screenshots: test-artifacts/screenshots/replace-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from core.models import OutboxMessage
from core.models import ProvisioningStep
from core.models import Role
from core.pipeline import REPLACEMENT_STEPS
from core.pipeline import replacement_step_key
from tests.e2e.admin_sign_in import first_admin_sign_in
from tests.e2e.admin_sign_in import password_step
from tests.e2e.conftest import serving_portal
from tests.factories import make_provision
from tests.factories import make_user

pytestmark = [pytest.mark.browser]

STUDENT = "rae@student.test"
ADMIN = "coach@bootcamp.test"


@pytest.fixture
def portal(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    sandbox: Any,
    tmp_path: Path,
) -> Iterator[str]:
    """The portal as the demo runs it (vendor clock 60x), without Prefect: runs stay queued."""
    with serving_portal(
        sandbox, database_url=db_url, instance_dir=tmp_path, vendor_time_scale=60.0
    ) as (_app, url, _settings):
        sandbox.configure(rate_limits_enabled=False)
        yield url


def _mirror(session: Session, provision_id: int, replacement_id: int, **steps: str) -> None:
    """Write the replacement's step rows as the replace-domain flow would."""
    now = utcnow()
    for position, (step, status) in enumerate(steps.items()):
        session.add(
            ProvisioningStep(
                provision_id=provision_id,
                step_key=replacement_step_key(replacement_id, step),
                position=position,
                status=status,
                attempt=1,
                started_at=now - timedelta(seconds=40),
                finished_at=now if status == "completed" else None,
            )
        )
    session.commit()


def test_admin_marks_a_domain_burned_and_the_student_replaces_it(
    portal: str, browser: Any, shoot: Any, session: Session
) -> None:
    url = portal
    make_user(session, ADMIN, role=Role.ADMIN, name="Coach Kim")
    provision = make_provision(
        session,
        make_user(session, STUDENT, name="Rae"),
        domains=["tryraelabs.com", "getraelabs.com", "raelabshq.com"],
        activated_at=utcnow() - timedelta(days=20),
    )
    session.commit()
    burned = session.scalars(select(Domain).where(Domain.name == "getraelabs.com")).one()

    # The admin marks getraelabs.com burned on the order's page.
    admin = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    admin.set_default_timeout(15000)
    admin.on("dialog", lambda dialog: dialog.accept())
    first_admin_sign_in(admin, url, ADMIN)
    admin.goto(f"{url}/admin/provisions/{provision.id}")
    row = admin.locator(f"#replace-domain-{burned.id}")
    row.locator("button:has-text('Mark burned')").click()
    admin.wait_for_url(f"**/admin/provisions/{provision.id}#replacements")
    assert "getraelabs.com is marked burned; its student can now replace it." in admin.inner_text(
        ".flashes"
    )
    row = admin.locator(f"#replace-domain-{burned.id}")
    assert "Burned Marked burned by an admin" in row.inner_text()
    assert row.locator("button:has-text('Clear burned mark')").count() == 1
    shoot(admin, "replace-01-admin-marked")

    # The student sees it on the dashboard and opens the replacement.
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(20000)
    password_step(page, url, STUDENT)
    page.wait_for_url(f"{url}/dashboard")
    card = page.locator(f"#domain-{burned.id}")
    assert (
        "Marked burned by your instructor: cold email from this domain is likely to land in spam."
        in (card.inner_text())
    )
    assert page.locator("a:has-text('Replace this domain')").count() == 1
    shoot(page, "replace-02-dashboard-burned")
    card.locator("a:has-text('Replace this domain')").click()

    page.wait_for_url(f"**/dashboard/domains/{burned.id}/replace")
    assert page.inner_text("h1") == "Replace getraelabs.com"
    explainer = page.inner_text("#replace-explainer")
    assert "Burned Marked burned by your instructor." in explainer
    assert "create the same mailboxes on it: tim@, tim.keen@, with your sender name" in explainer
    assert "Warmup starts again on the new mailboxes: send no cold email from them" in explainer
    assert "The mailboxes of getraelabs.com stop sending and are removed at their renewal" in (
        explainer
    )
    assert page.inner_text("#replace-allowance") == "1 of 1 included replacement left this month."
    page.fill("input[name=brand]", "Rae Labs")
    page.click("button:has-text('Suggest domains')")
    page.wait_for_selector("li.domain-row .badge-green")
    rows = page.locator("li.domain-row:has(.badge-green)")
    new_name = rows.first.locator(".domain-name").inner_text().strip()
    assert new_name not in ("tryraelabs.com", "getraelabs.com", "raelabshq.com")
    assert "/yr" in rows.first.inner_text()  # the live price
    rows.first.locator("button:has-text('Add')").click()
    page.wait_for_selector("ul.chosen li")
    assert "1 / 1" in page.inner_text(".picker-side h2")
    shoot(page, "replace-03-picked")
    page.click("button[value=continue]")

    page.wait_for_url(f"**/dashboard/domains/{burned.id}/replace/confirm")
    assert page.inner_text("h1") == f"Replace getraelabs.com with {new_name}"
    assert page.inner_text("#replace-fee") == "Included"
    shoot(page, "replace-04-confirm")
    page.click("button:has-text('Replace getraelabs.com')")

    # The progress page: the replacement's steps, polled like the setup's.
    page.wait_for_url("**/dashboard/replacements/*")
    replacement = session.scalars(select(DomainReplacement)).one()
    assert page.url.endswith(f"/dashboard/replacements/{replacement.id}")
    assert (replacement.status, replacement.payment, replacement.reason) == (
        "provisioning",
        "included",
        "admin",
    )
    queued = session.scalars(select(OutboxMessage.key)).all()
    assert f"replacement:{replacement.id}" in queued
    assert f"Replacing {burned.name} with {new_name}: your new domain is being set up." in (
        page.inner_text(".flashes")
    )
    assert page.inner_text("h1") == f"Replacing getraelabs.com with {new_name}"
    assert page.inner_text("#progress-words") == "We are setting up your new domain."
    total = len(REPLACEMENT_STEPS)
    assert page.inner_text("#progress-done") == f"0 of {total} steps done"
    titles = page.locator("#progress-steps .tl-title").all_inner_texts()
    assert titles[0] == "Buy your domains" and titles[-2:] == [
        "Retire the old domain",
        "Final checks",
    ]
    assert "Included in your package" in page.inner_text(".progress-head")
    shoot(page, "replace-05-progress-queued")

    _mirror(
        session,
        provision.id,
        replacement.id,
        buy_domains="completed",
        wait_domains="running",
    )
    page.wait_for_function(
        "expected => document.getElementById('progress-done').textContent === expected",
        arg=f"1 of {total} steps done",
    )
    bought = page.locator('#progress-steps [data-key="buy_domains"]')
    assert bought.locator(".tl-state").inner_text() == "Done"
    live = page.locator('#progress-steps [data-key="wait_domains"]')
    assert live.locator(".tl-state").inner_text() == "In progress"
    shoot(page, "replace-06-progress-running")

    # The dashboard says it too, and offers no second replacement of that domain.
    page.goto(f"{url}/dashboard")
    assert f"Replacing getraelabs.com with {new_name}: being set up." in page.inner_text(
        ".replacement-banner"
    )
    card = page.locator(f"#domain-{burned.id}")
    assert f"Replacement by {new_name}: being set up" in card.inner_text()
    assert page.locator("a:has-text('Replace this domain')").count() == 0
