"""Sign in and out: passwords, session regeneration, safe ``next``, throttling, CSRF, hashes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from core.models import LoginAttempt
from core.models import Role
from core.models import User
from core.passwords import MIN_PASSWORD_LENGTH
from core.passwords import PASSWORD_HASH_METHOD
from core.passwords import TEST_PASSWORD_HASH_METHOD
from core.passwords import WeakPasswordError
from core.passwords import hash_password
from core.passwords import needs_rehash
from core.passwords import verify_password
from core.settings import Settings
from portal.auth.policy import common_passwords
from portal.auth.policy import password_problem
from tests.core.test_settings import prod
from tests.factories import PASSWORD
from tests.factories import make_user
from tests.portal.two_factor_support import pass_second_step


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


def test_admin_goes_through_the_second_step_and_lands_on_the_cohort(
    client: Any, auth: Any, session: Session
) -> None:
    make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    # First sign-in: enrol (tests/portal/test_admin_2fa.py); the codes page continues to the cohort.
    assert auth.login("boss@example.com").headers["Location"] == "/auth/2fa/setup"
    auth.logout()
    first = client.post("/auth/login", data={"email": "boss@example.com", "password": PASSWORD})
    assert first.headers["Location"] == "/auth/2fa"
    done = pass_second_step(client, "boss@example.com", first)
    assert done.headers["Location"] == "/admin/cohort"


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


def test_an_outdated_hash_is_upgraded_at_sign_in(app_factory: Any, session: Session) -> None:
    app = app_factory(PASSWORD_HASH_METHOD="scrypt:2048:8:1")
    user = make_user(session, "ann@example.com")  # hashed with scrypt:1024:8:1
    session.commit()
    client = app.test_client()
    wrong = client.post("/auth/login", data={"email": "ann@example.com", "password": "nope-nope"})
    assert wrong.status_code == 401
    session.expire_all()
    assert session.get(User, user.id).password_hash.startswith("scrypt:1024:8:1$")
    assert (
        client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code
        == 302
    )
    session.expire_all()
    upgraded = session.get(User, user.id).password_hash
    assert upgraded.startswith("scrypt:2048:8:1$")
    assert verify_password(upgraded, PASSWORD)
    # Already current: the next sign-in leaves it alone.
    app.test_client().post("/auth/login", data={"email": user.email, "password": PASSWORD})
    session.expire_all()
    assert session.get(User, user.id).password_hash == upgraded


def test_hash_parameters_follow_current_guidance_outside_tests() -> None:
    dev = Settings(env="dev", _env_file=None)
    assert dev.password_hash_method == PASSWORD_HASH_METHOD == "scrypt:32768:8:3"
    assert needs_rehash(generate_password_hash("x" * 12), method=dev.password_hash_method)
    assert not needs_rehash(
        generate_password_hash("x" * 12, method="scrypt:32768:8:3"), method="scrypt:32768:8:3"
    )
    with pytest.raises(ValueError, match="cheap parameters"):
        prod(password_hash_method=TEST_PASSWORD_HASH_METHOD)
    with pytest.raises(ValueError, match="scrypt or pbkdf2"):
        Settings(env="dev", password_hash_method="md5", _env_file=None)


@pytest.mark.parametrize(
    "password", ["password", "123456789012", "qwertyuiopas", "QwertyUiopAs", "iloveyou1234"]
)
def test_common_passwords_are_refused(password: str) -> None:
    assert password_problem(password, email="ann@example.com") is not None


def test_the_common_list_is_about_a_thousand_long_and_the_policy_accepts_a_fine_password() -> None:
    assert 900 <= len(common_passwords()) <= 1500
    assert password_problem("plum-kettle-orbit-9", email="ann@example.com") is None
    assert "12 characters" in (password_problem("eleven-char", email="a@b.c") or "")
    assert "email" in (password_problem("annannannann@x.io", email="annannannann@x.io") or "")
    assert MIN_PASSWORD_LENGTH == 12
    with pytest.raises(WeakPasswordError):
        hash_password("eleven-char")


@pytest.mark.parametrize("path", ["/auth/login", "/auth/forgot"])
def test_an_address_with_control_characters_is_a_400_not_a_500(client: Any, path: str) -> None:
    response = client.post(path, data={"email": "a\x00b@example.com", "password": "x" * 12})
    assert response.status_code == 400
