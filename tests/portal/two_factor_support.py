"""Admins sign in in two steps in tests too, through the real pages: no switch turns 2FA off.

At an admin's first sign-in the enrolment page shows the secret; the code typed back is computed
from it, as an authenticator app would. Later sign-ins compute the code from the secret stored
(sealed) in the app DB. The portal accepts each 30-second step once and one step either side of
now, so a code is computed for the earliest step it still accepts: three sign-ins of one admin fit
in the same half-minute, and a fourth waits for the next step.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pyotp
from flask import Flask
from sqlalchemy import select

from core.crypto import SecretBox
from core.models import TotpFactor
from core.models import User
from portal.auth.totp import DRIFT_STEPS
from portal.auth.totp import STEP_S
from portal.auth.totp import current_step
from tests.factories import PASSWORD

SETUP = "/auth/2fa/setup"
VERIFY = "/auth/2fa"
# A recovery code as the page after enrolment lists it.
RECOVERY_CODE = re.compile(r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>")


def code_after(secret: str, last_step: int | None) -> str:
    """The code of the earliest step the portal still accepts (waiting for one if need be)."""
    while True:
        now = current_step()
        for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
            # A step about to leave the window might be gone by the time the POST lands.
            if step == now - DRIFT_STEPS and time.time() % STEP_S > STEP_S - 3:
                continue
            if last_step is None or step > last_step:
                return str(pyotp.TOTP(secret, interval=STEP_S).generate_otp(step))
        time.sleep(STEP_S - time.time() % STEP_S + 0.05)


def stored_factor(app: Flask, email: str) -> tuple[str, int | None]:
    """An enrolled admin's secret (opened with the app's data keys) and last accepted step."""
    with app.extensions["portal_db"].factory() as db:
        factor = db.scalar(
            select(TotpFactor).join(User, User.id == TotpFactor.user_id).where(User.email == email)
        )
        assert factor is not None and factor.confirmed_at is not None, f"{email} is not enrolled"
        box = SecretBox.from_settings(app.extensions["settings"])
        return box.open(factor.secret_enc).get_secret_value(), factor.last_step


def page_secret(page: str) -> str:
    """The secret the enrolment page shows (in groups of four)."""
    match = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert match, "no secret on the enrolment page"
    return match.group(1).replace(" ", "")


def _csrf(page: str) -> dict[str, str]:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    return {"csrf_token": match.group(1)} if match else {}


def pass_second_step(client: Any, email: str, response: Any) -> Any:
    """After the password step: enrol or enter a code if the portal asked for it; else nothing.

    Returns the second step's response (the recovery codes page, or the redirect home), or None.
    """
    if response.status_code != 302:
        return None
    where = urlsplit(response.headers["Location"]).path
    if where == SETUP:
        page = client.get(SETUP).get_data(as_text=True)
        code = code_after(page_secret(page), None)
        done = client.post(SETUP, data={"code": code, **_csrf(page)})
        assert done.status_code == 200 and "recovery codes" in done.get_data(as_text=True)
        return done
    if where == VERIFY:
        page = client.get(VERIFY).get_data(as_text=True)
        code = code_after(*stored_factor(client.application, email))
        done = client.post(VERIFY, data={"code": code, **_csrf(page)})
        assert done.status_code == 302, done.get_data(as_text=True)
        return done
    return None


def login(client: Any, email: str, password: str = PASSWORD, **form: str) -> Any:
    """POST the sign-in form and pass an admin's second step; return the password step's answer."""
    response = client.post("/auth/login", data={"email": email, "password": password, **form})
    pass_second_step(client, email, response)
    return response
