"""Password reset by email: one answer for every address, throttled, single-use expiring links."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import LoginAttempt
from core.models import Notification
from core.models import PasswordToken
from core.models import User
from core.models import UserSession
from core.passwords import verify_password
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.reliability import secret_scan

NEW_PASSWORD = "plum-kettle-orbit-9"
LINK = re.compile(r"http://portal\.test/auth/reset\?token=([A-Za-z0-9_-]+)")


def _ask(client: Any, email: str) -> Any:
    return client.post("/auth/forgot", data={"email": email})


def _emails(session: Session) -> list[Notification]:
    session.expire_all()
    return list(session.scalars(select(Notification).order_by(Notification.id)))


def _link(session: Session) -> str:
    """The token of the newest reset email, read from its queued body."""
    match = LINK.search(_emails(session)[-1].body)
    assert match, "no reset link in the email"
    return match.group(1)


def _open_link(client: Any, token: str) -> Any:
    return client.get(f"/auth/reset?token={token}")


def _set(client: Any, password: str, confirm: str | None = None) -> Any:
    return client.post("/auth/reset", data={"password": password, "confirm": confirm or password})


def test_the_sign_in_page_offers_a_reset(client: Any) -> None:
    assert 'href="/auth/forgot">Forgot password?' in client.get("/auth/login").get_data(
        as_text=True
    )
    assert client.get("/auth/forgot").status_code == 200


def test_the_answer_is_the_same_whether_or_not_the_address_exists(
    app: Flask, session: Session
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    known = _ask(app.test_client(), "ann@example.com")
    unknown = _ask(app.test_client(), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    assert "If an account uses that address" in known.get_data(as_text=True)
    emails = _emails(session)
    assert [(e.recipient, e.key) for e in emails] == [
        ("ann@example.com", f"password-reset:{session.scalar(select(PasswordToken.id))}")
    ]


def test_a_disabled_account_gets_no_email(client: Any, session: Session) -> None:
    make_user(session, "ann@example.com").is_active = False
    session.commit()
    assert _ask(client, "ann@example.com").status_code == 200
    assert _emails(session) == []


def test_reset_requests_are_throttled_like_sign_in_but_apart_from_it(
    app: Flask, client: Any, session: Session
) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 3
    make_user(session, "ann@example.com")
    session.commit()
    for _ in range(3):
        assert _ask(client, "ann@example.com").status_code == 200
    blocked = _ask(client, "ANN@example.com")
    assert blocked.status_code == 429
    assert "Too many reset requests. Try again in 15 minutes" in blocked.get_data(as_text=True)
    assert int(blocked.headers["Retry-After"]) > 800
    assert len(_emails(session)) == 3
    # Asking for resets locks nobody out of signing in.
    login = client.post("/auth/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert login.status_code == 302
    unknown = [_ask(app.test_client(), "ghost@example.com").status_code for _ in range(4)]
    assert unknown == [200, 200, 200, 429]  # unknown addresses are throttled the same way


def test_reset_sets_the_password_once_and_ends_every_session(
    app: Flask, session: Session, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = make_user(session, "ann@example.com")
    make_provision(session, user, status="active")
    session.commit()
    elsewhere = app.test_client()
    elsewhere.post("/auth/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert elsewhere.get("/progress.json").status_code == 200

    client = app.test_client()
    _ask(client, "ann@example.com")
    token = _link(session)
    opened = _open_link(client, token)
    # The token leaves the address bar at once (history, Referer): the form is at a clean URL.
    assert opened.status_code == 303 and opened.headers["Location"] == "/auth/reset"
    assert "Choose a new password" in client.get("/auth/reset").get_data(as_text=True)
    saved = _set(client, NEW_PASSWORD)
    assert saved.status_code == 303 and saved.headers["Location"] == "/auth/login"

    session.expire_all()
    assert verify_password(session.get(User, user.id).password_hash, NEW_PASSWORD)
    assert elsewhere.get("/progress.json").status_code == 401
    assert (
        session.scalar(
            select(func.count()).where(
                UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
            )
        )
        == 0
    )
    # Single use: the link (and a second tab holding it) no longer works.
    again = app.test_client()
    _open_link(again, token)
    assert _set(again, "another-fine-password").status_code == 400
    assert _open_link(app.test_client(), token).status_code == 303
    assert client.get("/auth/reset").status_code == 400
    # The old password is gone, the new one signs in.
    fresh = app.test_client()
    assert (
        fresh.post(
            "/auth/login", data={"email": "ann@example.com", "password": PASSWORD}
        ).status_code
        == 401
    )
    assert (
        fresh.post(
            "/auth/login", data={"email": "ann@example.com", "password": NEW_PASSWORD}
        ).status_code
        == 302
    )
    # At rest: only the token's hash; the used link is scrubbed from the queued email; no log.
    assert (
        session.scalar(select(PasswordToken.token_hash))
        == hashlib.sha256(token.encode()).hexdigest()
    )
    assert "[this link was used]" in _emails(session)[-1].body
    haystacks = {
        **secret_scan.app_db(engine),
        "log": "\n".join(r.getMessage() for r in caplog.records),
    }
    assert secret_scan.hits(haystacks, {"reset token": token, "new password": NEW_PASSWORD}) == []


@pytest.mark.parametrize(
    "password,message",
    [
        ("short-pw-1", "at least 12 characters"),
        ("123456789012", "common passwords"),
        ("qwertyuiopas", "common passwords"),
        ("Password1234", "common passwords"),
        ("ann@example.com", "email address"),
    ],
)
def test_weak_new_passwords_are_refused_and_the_link_stays_usable(
    client: Any, session: Session, password: str, message: str
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    _ask(client, "ann@example.com")
    _open_link(client, _link(session))
    refused = _set(client, password)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert _set(client, NEW_PASSWORD, "a-different-one!").status_code == 400
    assert _set(client, NEW_PASSWORD).status_code == 303


def test_an_expired_link_is_refused(client: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    _ask(client, "ann@example.com")
    row = session.scalars(select(PasswordToken)).one()
    assert row.expires_at - row.created_at == timedelta(hours=1)  # the default lifetime
    row.expires_at = row.created_at - timedelta(seconds=1)
    session.commit()
    _open_link(client, _link(session))
    page = client.get("/auth/reset")
    assert page.status_code == 400
    assert "invalid, expired or already used" in page.get_data(as_text=True)
    assert _set(client, NEW_PASSWORD).status_code == 400


def test_a_made_up_token_is_refused(client: Any) -> None:
    _open_link(client, "x" * 43)
    assert client.get("/auth/reset").status_code == 400
    assert client.get("/auth/reset?token=").status_code == 400


def test_using_one_link_retires_the_others(app: Flask, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    first, second = app.test_client(), app.test_client()
    _ask(first, "ann@example.com")
    _open_link(first, _link(session))
    _ask(second, "ann@example.com")
    _open_link(second, _link(session))
    assert _set(second, NEW_PASSWORD).status_code == 303
    assert _set(first, "yet-another-password").status_code == 400
    assert session.scalar(select(func.count()).where(PasswordToken.used_at.is_(None))) == 0


def test_reset_clears_the_failed_sign_ins_of_the_account(
    app: Flask, client: Any, session: Session
) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 2
    make_user(session, "ann@example.com")
    session.commit()
    for _ in range(2):
        client.post("/auth/login", data={"email": "ann@example.com", "password": "forgotten-it"})
    _ask(client, "ann@example.com")
    _open_link(client, _link(session))
    _set(client, NEW_PASSWORD)
    assert session.scalar(select(func.count()).where(LoginAttempt.email == "ann@example.com")) == 0
    login = client.post("/auth/login", data={"email": "ann@example.com", "password": NEW_PASSWORD})
    assert login.status_code == 302


def test_a_reset_from_a_browser_signed_in_as_someone_else_ends_that_session_too(
    client: Any, session: Session
) -> None:
    make_user(session, "ann@example.com")
    bob = make_user(session, "bob@example.com")
    session.commit()
    client.post("/auth/login", data={"email": "bob@example.com", "password": PASSWORD})
    _ask(client, "ann@example.com")
    _open_link(client, _link(session))
    assert _set(client, NEW_PASSWORD).status_code == 303
    session.expire_all()
    rows = session.scalars(select(UserSession).where(UserSession.user_id == bob.id)).all()
    assert [r.revoked_reason for r in rows] == ["sign_out"]
