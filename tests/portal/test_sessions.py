"""Sessions end on the server: sign-out, revocation and lifetimes refuse a replayed cookie."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from tests.portal.helpers import PASSWORD
from tests.portal.helpers import make_provision
from tests.portal.helpers import make_user

COOKIE = "portal_session"


def _signed_in(app: Flask, email: str) -> Any:
    client = app.test_client()
    response = client.post("/auth/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _replay(app: Flask, cookie: str) -> Any:
    """A fresh client (same user agent and address) carrying only the captured cookie."""
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    return client


def _refused(client: Any) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/auth/login")
    data = client.get("/progress.json")
    assert data.status_code == 401
    assert data.json["error"] == "unauthorized"


def test_a_cookie_captured_before_sign_out_is_refused_after_it(
    app: Flask, session: Session
) -> None:
    make_provision(session, make_user(session, "ann@example.com"), status="active")
    session.commit()
    victim = _signed_in(app, "ann@example.com")
    captured = victim.get_cookie(COOKIE).value
    # Control: the captured cookie works while the session is alive.
    assert _replay(app, captured).get("/progress.json").status_code == 200
    assert victim.post("/auth/logout").status_code == 302
    _refused(_replay(app, captured))
