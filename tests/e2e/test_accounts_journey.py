"""Accounts in headless Chromium: reset a forgotten password, sign in, sign out, replay refused.

A student signed in on another browser asks for a reset from the sign-in page, opens the emailed
link (read from the queued notification, which the sweep would send), is refused a common
password, sets a good one, and every earlier session ends. They sign in with the new password and
sign out; the session cookie copied before signing out, replayed in a fresh browser, opens
neither the dashboard (sign-in page) nor progress.json (401).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Notification
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user

pytestmark = [pytest.mark.browser]

EMAIL = "reset@student.test"
NEW_PASSWORD = "lantern-quiet-harbor-42"
COOKIE = "portal_session"


def _sign_in(page: Any, url: str, password: str) -> None:
    page.goto(f"{url}/auth/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")


def _reset_link(session: Session) -> str:
    session.expire_all()
    body = session.scalars(select(Notification.body).order_by(Notification.id.desc())).first()
    match = re.search(r"http://\S+/auth/reset\?token=\S+", body or "")
    assert match, "no reset link in the queued email"
    return match.group(0)


def test_reset_sign_in_sign_out_and_the_replayed_cookie_is_refused(
    portal: str, browser: Any, shoot: Any, session: Session
) -> None:
    url = portal
    make_provision(session, make_user(session, EMAIL), status="active")
    session.commit()

    # Another browser is signed in with the old password.
    other = browser.new_context()
    old_page = other.new_page()
    _sign_in(old_page, url, PASSWORD)
    old_page.wait_for_url(f"{url}/dashboard")

    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/auth/login")
    page.click("text=Forgot password?")
    page.wait_for_url(f"{url}/auth/forgot")
    page.fill("input[name=email]", EMAIL)
    shoot(page, "accounts-01-forgot")
    page.click("button:has-text('Email me a link')")
    assert "If an account uses that address" in page.inner_text("main")
    shoot(page, "accounts-02-forgot-sent")

    page.goto(_reset_link(session))
    page.wait_for_url(f"{url}/auth/reset")  # the token left the address bar
    page.fill("input[name=password]", "qwertyuiopas")
    page.fill("input[name=confirm]", "qwertyuiopas")
    page.click("button:has-text('Save the new password')")
    assert "list of common passwords" in page.inner_text("form")
    shoot(page, "accounts-03-reset-refused")
    page.fill("input[name=password]", NEW_PASSWORD)
    page.fill("input[name=confirm]", NEW_PASSWORD)
    page.click("button:has-text('Save the new password')")
    page.wait_for_url(f"{url}/auth/login")
    assert "Your password is changed" in page.inner_text("main")
    shoot(page, "accounts-04-reset-done")

    # The other browser's session ended with the password change.
    old_page.goto(f"{url}/dashboard")
    assert "/auth/login" in old_page.url

    _sign_in(page, url, PASSWORD)
    assert "Wrong email or password." in page.inner_text("main")
    _sign_in(page, url, NEW_PASSWORD)
    page.wait_for_url(f"{url}/dashboard")
    shoot(page, "accounts-05-signed-in")
    captured = next(c for c in context.cookies() if c["name"] == COOKIE)
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{url}/auth/login")

    replay = browser.new_context()
    replay.add_cookies([captured])
    replayed = replay.new_page()
    replayed.goto(f"{url}/dashboard")
    assert replayed.url.startswith(f"{url}/auth/login")
    shoot(replayed, "accounts-06-replay-refused")
    progress = replay.request.get(f"{url}/progress.json")
    assert progress.status == 401 and progress.json()["error"] == "unauthorized"
    for ctx in (other, context, replay):
        ctx.close()
