"""Signing an admin in from the browser: the password, then the second step, as a person would.

The code is computed from the secret the enrolment page shows (as an authenticator app would),
or, at later sign-ins, from that same secret and the step the portal last accepted.
"""

from __future__ import annotations

from typing import Any

from tests.factories import PASSWORD
from tests.portal.two_factor_support import code_after


def password_step(page: Any, url: str, email: str) -> None:
    """Fill in and send the sign-in form."""
    page.goto(f"{url}/auth/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")


def enrol(page: Any) -> tuple[str, list[str]]:
    """On the enrolment page: add the key to the 'app', confirm with its code, save the codes.

    Returns the secret and the recovery codes; leaves the page where "continue" leads.
    """
    page.wait_for_url("**/auth/2fa/setup")
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("input[name=code]", code_after(secret, None))
    page.click("button:has-text('Turn on two-factor sign-in')")
    page.wait_for_selector("#recovery-codes")
    codes = [item.strip() for item in page.locator("#recovery-codes li").all_inner_texts()]
    page.click("a:has-text('I have saved them, continue')")
    return secret, codes


def first_admin_sign_in(page: Any, url: str, email: str) -> str:
    """An admin's first sign-in: the password, then enrolment; returns the secret."""
    password_step(page, url, email)
    secret, _codes = enrol(page)
    return secret
