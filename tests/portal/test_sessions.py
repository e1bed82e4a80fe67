"""Sessions end on the server: sign-out, revocation and lifetimes refuse a replayed cookie."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import cli
from core.db import utcnow
from core.models import UserSession
from portal.auth import revoke_all_sessions
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user

COOKIE = "portal_session"


def _signed_in(app: Flask, email: str) -> Any:
    client = app.test_client()
    response = client.post("/auth/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _student(app: Flask, session: Session, email: str = "ann@example.com") -> Any:
    """A signed-in client of a student with an active provision (progress.json answers 200)."""
    make_provision(session, make_user(session, email), status="active")
    session.commit()
    return _signed_in(app, email)


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


def _row(session: Session, client: Any) -> UserSession:
    """The server-side row of ``client``'s session (found by the token its cookie carries)."""
    with client.session_transaction() as sess:
        token = sess["_user_id"]
    session.expire_all()
    row = session.get(UserSession, hashlib.sha256(token.encode()).hexdigest())
    assert row is not None
    return row


def test_the_cookie_carries_a_random_token_and_the_db_only_its_hash(
    app: Flask, session: Session
) -> None:
    user = make_user(session, "ann@example.com")
    session.commit()
    client = _signed_in(app, "ann@example.com")
    with client.session_transaction() as sess:
        token = sess["_user_id"]
    assert token != str(user.id) and len(token) >= 40
    row = _row(session, client)
    assert row.user_id == user.id and row.revoked_at is None
    assert row.user_agent and row.ip
    assert token not in repr(session.execute(select(UserSession.__table__)).all())


def test_signing_out_ends_only_that_session(app: Flask, session: Session) -> None:
    make_provision(session, make_user(session, "ann@example.com"), status="active")
    session.commit()
    laptop = _signed_in(app, "ann@example.com")
    phone = _signed_in(app, "ann@example.com")
    laptop.post("/auth/logout")
    assert laptop.get("/progress.json").status_code == 401
    assert phone.get("/progress.json").status_code == 200
    assert _row(session, phone).revoked_at is None


def test_sign_out_everywhere_ends_every_session_of_that_user_only(
    app: Flask, session: Session
) -> None:
    ann = make_user(session, "ann@example.com")
    make_provision(session, ann, status="active")
    make_provision(session, make_user(session, "bob@example.com"), status="active")
    session.commit()
    laptop = _signed_in(app, "ann@example.com")
    phone = _signed_in(app, "ann@example.com")
    bob = _signed_in(app, "bob@example.com")
    with app.test_request_context():
        assert revoke_all_sessions(ann.id, "admin") == 2
    _refused(laptop)
    _refused(phone)
    assert bob.get("/progress.json").status_code == 200
    assert _row(session, bob).revoked_at is None


def test_the_infra_command_signs_a_user_out_everywhere(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    client = _student(app, session)
    monkeypatch.setattr(cli, "get_settings", lambda: app.extensions["settings"])
    cli.main(["revoke-sessions", "--email", "ANN@example.com"])
    assert "sessions ended for ann@example.com: 1" in capsys.readouterr().out
    _refused(client)
    assert _row(session, client).revoked_reason == "cli"
    with pytest.raises(SystemExit, match="no user"):
        cli.main(["revoke-sessions", "--email", "nobody@example.com"])


def test_a_new_password_from_the_infra_command_ends_the_old_sessions(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _student(app, session)
    monkeypatch.setattr(cli, "get_settings", lambda: app.extensions["settings"])
    monkeypatch.setenv("NEW_PW", "a-brand-new-long-password")
    cli.main(["create-student", "--email", "ann@example.com", "--password-env", "NEW_PW"])
    _refused(client)
    assert _row(session, client).revoked_reason == "password_change"


def _age(session: Session, client: Any, **ago: timedelta) -> None:
    row = _row(session, client)
    for column, delta in ago.items():
        setattr(row, column, getattr(row, column) - delta)
    session.commit()


def test_an_idle_session_ends_after_the_idle_lifetime(app: Flask, session: Session) -> None:
    client = _student(app, session)
    idle = timedelta(seconds=app.config["SESSION_IDLE_S"])
    assert idle == timedelta(hours=2)  # the default
    _age(
        session,
        client,
        created_at=idle - timedelta(minutes=1),
        last_seen_at=idle - timedelta(minutes=1),
    )
    assert client.get("/progress.json").status_code == 200  # just inside: the request renews it
    _age(session, client, last_seen_at=idle)
    _refused(client)
    assert _row(session, client).revoked_reason == "idle"


def test_a_busy_session_still_ends_at_the_absolute_lifetime(app: Flask, session: Session) -> None:
    client = _student(app, session)
    absolute = timedelta(seconds=app.config["SESSION_ABSOLUTE_S"])
    assert absolute == timedelta(hours=12)  # the default
    _age(session, client, created_at=absolute - timedelta(seconds=30))
    assert client.get("/progress.json").status_code == 200
    _age(session, client, created_at=timedelta(seconds=31))
    _refused(client)
    assert _row(session, client).revoked_reason == "absolute"


def test_lifetimes_are_settings(app_factory: Any, session: Session) -> None:
    app = app_factory(SESSION_IDLE_S=120, SESSION_ABSOLUTE_S=600)
    client = _student(app, session)
    _age(session, client, last_seen_at=timedelta(seconds=121))
    _refused(client)


def test_last_seen_is_written_at_most_once_a_minute(app: Flask, session: Session) -> None:
    client = _student(app, session)
    _age(session, client, last_seen_at=timedelta(seconds=50))
    before = _row(session, client).last_seen_at
    for _ in range(5):
        assert client.get("/progress.json").status_code == 200
    assert _row(session, client).last_seen_at == before  # under a minute old: not written
    _age(session, client, last_seen_at=timedelta(seconds=15))
    client.get("/progress.json")
    touched = _row(session, client).last_seen_at
    assert touched > before and utcnow() - touched < timedelta(seconds=30)


def test_a_disabled_users_sessions_stop_working(app: Flask, session: Session) -> None:
    user = make_user(session, "ann@example.com")
    make_provision(session, user, status="active")
    session.commit()
    client = _signed_in(app, "ann@example.com")
    user.is_active = False
    session.commit()
    _refused(client)


def test_signing_in_again_ends_the_previous_session_of_that_browser(
    app: Flask, session: Session
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    client = _signed_in(app, "ann@example.com")
    first = _row(session, client)
    client.post("/auth/login", data={"email": "ann@example.com", "password": PASSWORD})
    session.expire_all()
    assert session.get(UserSession, first.id).revoked_reason == "signed_in_again"
    assert _row(session, client).id != first.id
