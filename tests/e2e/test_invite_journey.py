"""Cohort onboarding in headless Chromium: a CSV with a bad row, the fix, the invite, the wizard.

An admin creates a cohort and uploads a student list with one bad address: the preview names the
line and why, and nothing is imported. The corrected file imports both students. Ann opens the
link of her invitation email (read from the queued notification, which the sweep would send),
is refused a common password, chooses a good one and lands signed in at the wizard; the admin
sees her invitation accepted. After she signs out, the same link is refused.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Notification
from core.models import Role
from core.models import User
from tests.e2e.admin_sign_in import first_admin_sign_in
from tests.factories import make_user
from tests.factories import tiers

pytestmark = [pytest.mark.browser]

ADMIN = "admin@bootcamp.test"
NEW_PASSWORD = "copper-willow-signal-31"
BAD_FILE = "email;first name;last name\nann@student.test;Ann;Lee\nbob-at-student.test;Bob;Ray\n"
FIXED_FILE = "\ufeff" + BAD_FILE.replace("bob-at-student.test", "bob@student.test")


def _upload(page: Any, text: str) -> None:
    page.set_input_files(
        "input[name=csv_file]",
        files=[{"name": "students.csv", "mimeType": "text/csv", "buffer": text.encode("utf-8")}],
    )
    page.click("button:has-text('Preview the import')")


def _students(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).where(User.role == Role.STUDENT.value)) or 0


def _invite_link(session: Session, email: str) -> str:
    session.expire_all()
    body = session.scalars(select(Notification.body).where(Notification.recipient == email)).one()
    match = re.search(r"http://\S+/auth/invite\?token=\S+", body)
    assert match, "no invitation link in the queued email"
    return match.group(0)


def test_import_with_a_bad_row_then_fixed_then_invite_accepted_and_the_link_refused_again(
    portal: str,  # noqa: F811 - the imported fixture
    browser: Any,
    shoot: Any,
    session: Session,
) -> None:
    url = portal
    tiers(session)
    make_user(session, ADMIN, role=Role.ADMIN)
    session.commit()

    admin_context = browser.new_context()
    admin = admin_context.new_page()
    first_admin_sign_in(admin, url, ADMIN)
    admin.goto(f"{url}/admin/cohort")
    admin.click("nav >> text=Cohorts")
    admin.wait_for_url(f"{url}/admin/cohorts")
    admin.fill("input[name=name]", "Spring 2027")
    admin.fill("input[name=starts_on]", "2027-03-01")
    admin.fill("input[name=instructor]", "Ida Bell")
    admin.click("button:has-text('Create cohort')")
    admin.wait_for_url(re.compile(r".*/admin/cohorts/\d+$"))
    assert "Cohort Spring 2027 created." in admin.inner_text("main")
    cohort_page = admin.url

    _upload(admin, BAD_FILE)
    alert = admin.inner_text("[role=alert]")
    assert "Nothing was imported." in alert
    assert "Line 3: not a valid email address" in alert
    assert admin.locator("button:has-text('send their invitations')").count() == 0
    shoot(admin, "invite-01-bad-row")
    assert _students(session) == 0
    admin.click("text=Upload a corrected file")
    admin.wait_for_url(cohort_page)
    assert "No students yet" in admin.inner_text("main")

    _upload(admin, FIXED_FILE)
    assert "Every row is fine." in admin.inner_text("main")
    shoot(admin, "invite-02-preview-ok")
    admin.click("button:has-text('Import 2 students and send their invitations')")
    admin.wait_for_url(cohort_page)
    main = admin.inner_text("main")
    assert "Imported 2 students and queued their invitations." in main
    assert "ann@student.test" in main and "bob@student.test" in main
    assert _students(session) == 2
    shoot(admin, "invite-03-imported")

    link = _invite_link(session, "ann@student.test")
    student_context = browser.new_context()
    student = student_context.new_page()
    student.goto(link)
    student.wait_for_url(f"{url}/auth/invite")  # the token left the address bar
    assert "Choose the password of ann@student.test" in student.inner_text("main")
    student.fill("input[name=password]", "qwertyuiopas")
    student.fill("input[name=confirm]", "qwertyuiopas")
    student.click("button:has-text('Set my password')")
    assert "list of common passwords" in student.inner_text("form")
    student.fill("input[name=password]", NEW_PASSWORD)
    student.fill("input[name=confirm]", NEW_PASSWORD)
    student.click("button:has-text('Set my password')")
    student.wait_for_url(f"{url}/wizard/package")
    main = student.inner_text("main")
    assert "Your password is set and you are signed in." in main
    assert "Choose your package" in main
    assert "ann@student.test" in student.inner_text("nav")
    shoot(student, "invite-04-wizard")

    admin.reload()
    row = admin.locator("tr", has_text="ann@student.test").inner_text()
    assert "Accepted" in row
    assert "Invited" in admin.locator("tr", has_text="bob@student.test").inner_text()

    student.click("button:has-text('Sign out')")
    student.wait_for_url(f"{url}/auth/login")
    student.goto(link)
    student.wait_for_url(f"{url}/auth/invite")
    assert "This invitation link is invalid, expired, withdrawn or already used." in (
        student.inner_text("main")
    )
    shoot(student, "invite-05-link-refused")
    for context in (admin_context, student_context):
        context.close()
