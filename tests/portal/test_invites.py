"""Accepting a cohort invitation: a single-use, expiring link to a first password and the wizard."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AuditLog
from core.models import Cohort
from core.models import Notification
from core.models import PasswordToken
from core.models import User
from core.models import UserSession
from core.passwords import verify_password
from tests.factories import PASSWORD
from tests.factories import make_user
from tests.portal.test_cohorts import GOOD
from tests.portal.test_cohorts import admin_client
from tests.portal.test_cohorts import cohort  # noqa: F401 - the same cohort fixture
from tests.portal.test_cohorts import import_csv
from tests.portal.test_cohorts import invite_links
from tests.reliability import secret_scan

NEW_PASSWORD = "violet-anchor-meadow-7"
REFUSED = "This invitation link is invalid, expired, withdrawn or already used."


@pytest.fixture
def invited(
    app: Flask,
    session: Session,
    cohort: Cohort,  # noqa: F811 - the imported fixture
) -> dict[str, Any]:
    """A cohort imported by an admin: Ann and Bob are invited; their links and the admin."""
    admin = admin_client(app, session)
    assert import_csv(admin, cohort.id, GOOD, confirm=True).status_code == 303
    ann = session.scalars(select(User).where(User.email == "ann@example.com")).one()
    return {"admin": admin, "cohort": cohort, "ann": ann, "links": invite_links(session)}


def _open(client: Any, token: str) -> Any:
    return client.get(f"/auth/invite?token={token}")


def _set(client: Any, password: str, confirm: str | None = None) -> Any:
    return client.post("/auth/invite", data={"password": password, "confirm": confirm or password})


def test_accepting_sets_the_password_signs_in_and_opens_the_wizard(
    app: Flask,
    session: Session,
    engine: Engine,
    invited: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = invited["links"]["ann@example.com"]
    client = app.test_client()
    opened = _open(client, token)
    # The token leaves the address bar at once (history, Referer): the form is at a clean URL.
    assert opened.status_code == 303 and opened.headers["Location"] == "/auth/invite"
    form = client.get("/auth/invite").get_data(as_text=True)
    assert "Choose the password of <strong>ann@example.com</strong>" in form
    common = _set(client, "qwertyuiopas")
    assert common.status_code == 400
    assert "list of common passwords" in common.get_data(as_text=True)
    assert _set(client, NEW_PASSWORD, "something-else-entirely").status_code == 400
    assert _set(client, "ann@example.com").status_code == 400

    done = _set(client, NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["Location"] == "/wizard/"
    wizard = client.get("/wizard/", follow_redirects=True)
    assert wizard.request.path.startswith("/wizard/")
    assert "Your password is set and you are signed in." in wizard.get_data(as_text=True)

    session.expire_all()
    ann = session.get(User, invited["ann"].id)
    assert verify_password(ann.password_hash, NEW_PASSWORD)
    assert session.scalar(select(func.count()).where(UserSession.user_id == ann.id)) == 1
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "invite_accepted")).one()
    assert (audit.actor_id, audit.target_id) == (ann.id, ann.id)
    page = invited["admin"].get(f"/admin/cohorts/{invited['cohort'].id}").get_data(as_text=True)
    assert 'ann@example.com</span></td>\n      <td><span class="badge badge-green">Accepted' in page
    # Single use: the link, in this browser or another, no longer works.
    assert _open(app.test_client(), token).status_code == 303
    again = app.test_client()
    _open(again, token)
    refused = again.get("/auth/invite")
    assert refused.status_code == 400 and REFUSED in refused.get_data(as_text=True)
    # Signing in later works with the chosen password.
    login = app.test_client().post(
        "/auth/login", data={"email": "ann@example.com", "password": NEW_PASSWORD}
    )
    assert login.status_code == 302
    # At rest only the hash; the used link is scrubbed from the queued email; nothing logged.
    body = session.scalars(
        select(Notification.body).where(Notification.recipient == "ann@example.com")
    ).one()
    assert "[this link was used]" in body
    haystacks = {
        **secret_scan.app_db(engine),
        "log": "\n".join(r.getMessage() for r in caplog.records),
    }
    assert secret_scan.hits(haystacks, {"invite": token, "password": NEW_PASSWORD}) == []


def test_an_expired_link_is_refused(app: Flask, session: Session, invited: dict[str, Any]) -> None:
    session.execute(
        PasswordToken.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    client = app.test_client()
    _open(client, invited["links"]["ann@example.com"])
    page = client.get("/auth/invite")
    assert page.status_code == 400 and REFUSED in page.get_data(as_text=True)
    assert _set(client, NEW_PASSWORD).status_code == 400


def test_a_resent_invite_replaces_the_old_link(
    app: Flask, session: Session, invited: dict[str, Any]
) -> None:
    old = invited["links"]["ann@example.com"]
    spring, ann = invited["cohort"], invited["ann"]
    invited["admin"].post(f"/admin/cohorts/{spring.id}/students/{ann.id}/resend")
    new = invite_links(session)["ann@example.com"]
    stale = app.test_client()
    _open(stale, old)
    assert stale.get("/auth/invite").status_code == 400
    fresh = app.test_client()
    _open(fresh, new)
    assert _set(fresh, NEW_PASSWORD).status_code == 303
    # Accepted: there is nothing left to re-send.
    tokens = session.scalar(select(func.count()).select_from(PasswordToken))
    invited["admin"].post(f"/admin/cohorts/{spring.id}/students/{ann.id}/resend")
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(PasswordToken)) == tokens
    page = invited["admin"].get(f"/admin/cohorts/{spring.id}").get_data(as_text=True)
    assert "ann@example.com has chosen a password already: nothing was sent." in page


def test_a_revoked_invite_opens_nothing_not_even_by_a_reset(
    app: Flask, session: Session, invited: dict[str, Any]
) -> None:
    spring, ann = invited["cohort"], invited["ann"]
    invited["admin"].post(f"/admin/cohorts/{spring.id}/students/{ann.id}/revoke")
    client = app.test_client()
    _open(client, invited["links"]["ann@example.com"])
    assert client.get("/auth/invite").status_code == 400
    assert _set(client, NEW_PASSWORD).status_code == 400
    emails = session.scalar(select(func.count()).select_from(Notification))
    assert client.post("/auth/forgot", data={"email": "ann@example.com"}).status_code == 200
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Notification)) == emails
    # Bob's invitation is untouched.
    bob = app.test_client()
    _open(bob, invited["links"]["bob@example.com"])
    assert bob.get("/auth/invite").status_code == 200


def test_accepting_in_a_browser_signed_in_as_someone_else_ends_that_session(
    app: Flask, session: Session, invited: dict[str, Any]
) -> None:
    make_user(session, "zed@example.com")
    session.commit()
    client = app.test_client()
    client.post("/auth/login", data={"email": "zed@example.com", "password": PASSWORD})
    _open(client, invited["links"]["ann@example.com"])
    assert _set(client, NEW_PASSWORD).status_code == 303
    session.expire_all()
    zed = session.scalars(select(User).where(User.email == "zed@example.com")).one()
    ended = session.scalars(select(UserSession).where(UserSession.user_id == zed.id)).one()
    assert ended.revoked_reason == "signed_in_again"
    page = client.get("/dashboard", follow_redirects=True).get_data(as_text=True)
    assert "ann@example.com" in page and "zed@example.com" not in page


@pytest.mark.usefixtures("invited")
def test_a_guessed_or_missing_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/auth/invite").status_code == 400
    _open(client, "x" * 5000)
    with client.session_transaction() as sess:
        assert len(sess["invite_token"]) == 200
    assert client.get("/auth/invite").status_code == 400
    with client.session_transaction() as sess:
        assert "invite_token" not in sess
