"""Admin two-factor in headless Chromium: enrol at first sign-in, sign in with a code, read the audit.

An admin signs in for the first time: the password alone opens no admin page; the enrolment page
shows a QR code and the key; a wrong code is refused, the app's code turns two-factor on and the
ten recovery codes are shown once. They sign out, sign in again with the password and a fresh code,
and the audit log page lists both sign-ins, the enrolment and the sign-out, with the browser's
address and user agent.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Role
from core.models import TotpFactor
from tests.e2e.admin_sign_in import enrol
from tests.e2e.admin_sign_in import password_step
from tests.factories import make_user
from tests.portal.two_factor_support import code_after

pytestmark = [pytest.mark.browser]

EMAIL = "coach@bootcamp.test"


def _audit_rows(page: Any) -> list[str]:
    return [row.strip() for row in page.locator("table.audit-log tbody tr").all_inner_texts()]


def test_admin_enrols_signs_in_with_a_code_and_finds_it_in_the_audit_log(
    portal: str,  # noqa: F811  (the imported fixture)
    browser: Any,
    shoot: Any,
    session: Session,
) -> None:
    url = portal
    admin = make_user(session, EMAIL, role=Role.ADMIN, name="Coach Kim")
    session.commit()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)

    # The password alone: the enrolment page, and no admin page.
    password_step(page, url, EMAIL)
    page.wait_for_url("**/auth/2fa/setup")
    assert "Set up two-factor sign-in" in page.inner_text("h1")
    qr = page.locator("img[alt^='QR code']")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    assert len(page.inner_text("#totp-secret").split()) == 8
    shoot(page, "2fa-01-enrol")
    page.goto(f"{url}/admin/cohort")
    assert page.url == f"{url}/auth/login?next=/admin/cohort"
    assert "Sign in" in page.inner_text("h1")
    assert "Cohort" not in page.inner_text("body")

    # Back to the enrolment (still half-way): a wrong code, then the app's code.
    page.goto(f"{url}/auth/2fa/setup")
    page.fill("input[name=code]", "000000")
    page.click("button:has-text('Turn on two-factor sign-in')")
    assert "That code did not work" in page.inner_text(".flash-error")
    secret, codes = enrol(page)
    assert len(codes) == 10 and len(set(codes)) == 10
    page.wait_for_url("**/admin/cohort")
    assert "Cohort" in page.inner_text("h1")

    # Sign out, then the password and a fresh code from the app.
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/auth/login")
    assert "You are signed out." in page.inner_text(".flashes")
    password_step(page, url, EMAIL)
    page.wait_for_url("**/auth/2fa")
    assert "Enter your code" in page.inner_text("h1")
    shoot(page, "2fa-02-code")
    session.expire_all()
    last_step = session.scalar(select(TotpFactor.last_step).where(TotpFactor.user_id == admin.id))
    page.fill("input[name=code]", code_after(secret, last_step))
    page.click("button:has-text('Verify')")
    page.wait_for_url("**/admin/cohort")

    # The audit log shows it all, newest first, with where it came from.
    page.click("nav a:has-text('Audit log')")
    page.wait_for_url("**/admin/audit")
    rows = _audit_rows(page)
    assert [row.split("\t")[2] for row in rows[:4]] == [
        "sign in",
        "sign out",
        "sign in",
        "two factor enrolled",
    ]
    assert all(EMAIL in row and "127.0.0.1" in row and "HeadlessChrome" in row for row in rows[:4])
    assert '{"second_factor": "totp"}' in rows[0]
    shoot(page, "2fa-03-audit")
    page.select_option("select[name=action]", "sign_in")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r".*/admin/audit\?.*action=sign_in"))
    assert [row.split("\t")[2] for row in _audit_rows(page)] == ["sign in", "sign in"]
    context.close()
