"""Sign in and out: passwords, session regeneration, safe ``next``, throttling, CSRF."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import LoginAttempt
from core.models import Role
from tests.portal.helpers import make_user


def test_login_page_renders(client: Any) -> None:
    response = client.get("/auth/login")
    assert response.status_code == 200
    assert "Sign in" in response.get_data(as_text=True)


def test_student_signs_in_and_lands_on_the_wizard(client: Any, auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    response = auth.login("ann@example.com")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/wizard/"


def test_admin_lands_on_the_cohort(auth: Any, session: Session) -> None:
    make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    assert auth.login("boss@example.com").headers["Location"] == "/admin/cohort"


def test_email_is_case_insensitive(auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    assert auth.login("  ANN@Example.com ").status_code == 302


@pytest.mark.parametrize(
    "email,password",
    [("ann@example.com", "wrong-password"), ("nobody@example.com", "correct-horse-battery")],
)
def test_wrong_credentials_are_refused_with_one_message(
    auth: Any, session: Session, email: str, password: str
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    response = auth.login(email, password)
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)


def test_disabled_user_cannot_sign_in(auth: Any, session: Session) -> None:
    user = make_user(session, "ann@example.com")
    user.is_active = False
    session.commit()
    assert auth.login("ann@example.com").status_code == 401


def test_session_is_regenerated_at_login(client: Any, auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    with client.session_transaction() as sess:
        sess["planted"] = "by-an-attacker"
    auth.login("ann@example.com")
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess["_user_id"]


def test_session_cookie_flags(auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    response = auth.login("ann@example.com")
    cookie = next(
        v for k, v in response.headers.items() if k == "Set-Cookie" and "portal_session" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/dashboard", "/dashboard"),
        ("/admin/cohort?x=1", "/admin/cohort?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\tevil", "/"),
    ],
)
def test_next_only_goes_to_same_site_paths(
    auth: Any, session: Session, target: str, expected: str
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    response = auth.login("ann@example.com", next=target)
    assert response.headers["Location"] == expected


def test_anonymous_is_sent_to_login_with_next(client: Any) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/dashboard"


def test_logout_needs_post_and_signs_out(client: Any, auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    assert client.get("/auth/logout").status_code == 405
    assert auth.logout().headers["Location"] == "/auth/login"
    assert client.get("/dashboard").status_code == 302


def test_failed_logins_are_throttled_per_email(app: Flask, auth: Any, session: Session) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 3
    make_user(session, "ann@example.com")
    session.commit()
    for _ in range(3):
        assert auth.login("ann@example.com", "nope-nope-nope").status_code == 401
    # Even the right password is refused while blocked, and nothing more is recorded.
    blocked = auth.login("ann@example.com")
    assert blocked.status_code == 429
    assert "Try again in 15 minutes" in blocked.get_data(as_text=True)
    assert int(blocked.headers["Retry-After"]) > 800
    assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 3


def test_failed_logins_are_throttled_per_address(app: Flask, auth: Any, session: Session) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_IP"] = 2
    make_user(session, "ann@example.com")
    session.commit()
    auth.login("a@example.com", "x-x-x-x-x-x")
    auth.login("b@example.com", "x-x-x-x-x-x")
    assert auth.login("ann@example.com").status_code == 429


def test_success_clears_the_failures_of_that_email(auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com", "nope-nope-nope")
    assert auth.login("ann@example.com").status_code == 302
    count = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.email == "ann@example.com")
    )
    assert count == 0


def test_forms_need_a_csrf_token(app_factory: Any, session: Session) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    make_user(session, "ann@example.com")
    session.commit()
    client = app.test_client()
    response = client.post(
        "/auth/login", data={"email": "ann@example.com", "password": "correct-horse-battery"}
    )
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
