"""Admin two-factor: enrolment at first sign-in, TOTP or recovery code after the password, limits.

Everything goes through the real pages and the real checks; codes are computed from the secret
the enrolment page shows, as an authenticator app would.
"""

from __future__ import annotations

import re
from typing import Any

import pyotp
import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.models import AuditLog
from core.models import RecoveryCode
from core.models import Role
from core.models import TotpFactor
from core.models import User
from core.models import UserSession
from portal.auth import signin
from portal.auth import totp
from portal.db import get_db
from tests.factories import PASSWORD
from tests.factories import make_user
from tests.portal.two_factor_support import RECOVERY_CODE
from tests.portal.two_factor_support import SETUP
from tests.portal.two_factor_support import VERIFY
from tests.portal.two_factor_support import code_after
from tests.portal.two_factor_support import page_secret

EMAIL = "boss@example.com"
ADMIN_PAGES = ("/admin/", "/admin/cohort", "/admin/tiers", "/admin/tiers/new", "/admin/audit")


@pytest.fixture
def boss(session: Session) -> User:
    """An admin who has never signed in."""
    user = make_user(session, EMAIL, role=Role.ADMIN)
    session.commit()
    return user


def _password(client: Any, email: str = EMAIL) -> Any:
    return client.post("/auth/login", data={"email": email, "password": PASSWORD})


def _enrol(client: Any) -> tuple[str, list[str]]:
    """First sign-in through the pages; the secret and the recovery codes shown."""
    assert _password(client).headers["Location"] == SETUP
    secret = page_secret(client.get(SETUP).get_data(as_text=True))
    done = client.post(SETUP, data={"code": code_after(secret, None)})
    assert done.status_code == 200
    return secret, RECOVERY_CODE.findall(done.get_data(as_text=True))


def _last_step(session: Session, user: User) -> int | None:
    session.expire_all()
    factor = session.get(TotpFactor, user.id)
    return factor.last_step if factor else None


def _actions(session: Session, user: User) -> list[str]:
    session.expire_all()
    rows = select(AuditLog.action).where(AuditLog.target_id == user.id).order_by(AuditLog.id)
    return list(session.scalars(rows.where(AuditLog.target_type == "user")))


def test_first_sign_in_enrols_and_only_a_right_code_turns_it_on(
    app: Flask, client: Any, session: Session, boss: User
) -> None:
    assert _password(client).headers["Location"] == SETUP
    # Half-signed-in: no admin page, no signed-in anything.
    for path in ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith(
            "/auth/login"
        ), path
    assert client.get("/progress.json").status_code == 401
    assert client.get(VERIFY).headers["Location"] == SETUP  # not enrolled yet

    page = client.get(SETUP).get_data(as_text=True)
    secret = page_secret(page)
    assert len(secret) == 32 and re.search(r'id="totp-secret">(\w{4} ){7}\w{4}<', page)
    assert (
        "otpauth://totp/Outbound%20Portal:boss%40example.com?secret="
        f"{secret}&amp;issuer=Outbound%20Portal" in page
    )
    assert '<img src="data:image/svg+xml' in page
    assert page_secret(client.get(SETUP).get_data(as_text=True)) == secret  # a reload keeps it
    factor = session.get(TotpFactor, boss.id)
    assert factor is not None and factor.confirmed_at is None
    assert secret not in factor.secret_enc
    box = SecretBox.from_settings(app.extensions["settings"])
    assert box.open(factor.secret_enc).get_secret_value() == secret

    wrong = client.post(SETUP, data={"code": "000000"})
    assert wrong.status_code == 401 and "That code did not work" in wrong.get_data(as_text=True)
    assert client.get("/admin/cohort").status_code == 302
    session.expire_all()
    assert session.get(TotpFactor, boss.id).confirmed_at is None

    done = client.post(SETUP, data={"code": code_after(secret, None)})
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "This is the only time they are shown" in body
    codes = RECOVERY_CODE.findall(body)
    assert len(codes) == 10 == len(set(codes))
    assert 'href="/admin/cohort"' in body
    session.expire_all()
    assert session.get(TotpFactor, boss.id).confirmed_at is not None
    hashes = set(session.scalars(select(RecoveryCode.code_hash)))
    assert len(hashes) == 10 and not hashes & set(codes)
    (live,) = session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None)))
    assert (live.user_id, live.second_factor) == (boss.id, "totp")
    assert client.get("/admin/cohort").status_code == 200
    assert _actions(session, boss) == ["two_factor_enrolled", "sign_in"]
    # Enrolled: the setup page now sends to the code page (nothing can re-enrol over it).
    client.post("/auth/logout")
    _password(client)
    assert client.get(SETUP).headers["Location"] == VERIFY


def test_a_code_counts_once_within_one_step_either_side_of_now(
    client: Any, session: Session, boss: User
) -> None:
    secret, _ = _enrol(client)
    client.post("/auth/logout")
    app_code = pyotp.TOTP(secret, interval=totp.STEP_S)
    used = _last_step(session, boss)
    assert used is not None
    assert _password(client).headers["Location"] == VERIFY
    # The code just used at enrolment, and one from a minute ago, are refused.
    for step in (used, totp.current_step() - 2):
        refused = client.post(VERIFY, data={"code": app_code.generate_otp(step)})
        assert refused.status_code == 401, step
    assert client.get("/admin/cohort").status_code == 302
    accepted = client.post(VERIFY, data={"code": code_after(secret, used)})
    assert accepted.headers["Location"] == "/admin/cohort"
    assert client.get("/admin/cohort").status_code == 200


@pytest.mark.parametrize("offset,ok", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_the_window_is_one_step_either_side(
    app: Flask, boss: User, monkeypatch: pytest.MonkeyPatch, offset: int, ok: bool
) -> None:
    now = 60_000_000
    monkeypatch.setattr(totp, "current_step", lambda: now)
    with app.test_request_context():
        db = get_db()
        secret = totp.enrolment_secret(db, db.get(User, boss.id))
        factor = totp.factor_of(db, boss.id)
        code = pyotp.TOTP(secret).generate_otp(now + offset)
        assert totp.accept_code(db, factor, code) is ok
        db.expire_all()
        assert factor.last_step == (now + offset if ok else None)
        # Accepted once: never again, nor any earlier step.
        assert totp.accept_code(db, factor, code) is False
        assert totp.accept_code(db, factor, pyotp.TOTP(secret).generate_otp(now - 1)) is (
            ok is False
        )


def test_a_recovery_code_signs_in_once(client: Any, session: Session, boss: User) -> None:
    _, codes = _enrol(client)
    client.post("/auth/logout")
    _password(client)
    # Typed back in capitals with spaces instead of dashes: still the code.
    typed = codes[3].upper().replace("-", " ")
    response = client.post(VERIFY, data={"code": typed})
    assert response.headers["Location"] == "/admin/cohort"
    session.expire_all()
    live = session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).one()
    assert live.second_factor == "recovery_code"
    row = session.scalars(select(AuditLog).where(AuditLog.action == "recovery_code_used")).one()
    assert (row.actor_id, row.target_id, row.details) == (boss.id, boss.id, {"left": 9})
    client.post("/auth/logout")
    _password(client)
    again = client.post(VERIFY, data={"code": codes[3]})
    assert again.status_code == 401
    assert client.get("/admin/cohort").status_code == 302


def test_wrong_codes_are_throttled_and_a_burst_is_audited_once(
    app: Flask, client: Any, session: Session, boss: User
) -> None:
    secret, _ = _enrol(client)
    client.post("/auth/logout")
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 3
    _password(client)
    for _ in range(3):
        assert client.post(VERIFY, data={"code": "123456"}).status_code == 401
    blocked = client.post(VERIFY, data={"code": code_after(secret, _last_step(session, boss))})
    assert blocked.status_code == 429 and "Too many wrong codes" in blocked.get_data(as_text=True)
    assert client.get("/admin/cohort").status_code == 302
    rows = session.scalars(select(AuditLog).where(AuditLog.action == "two_factor_throttled"))
    assert [(r.target_id, r.details["email"]) for r in rows] == [(boss.id, EMAIL)]
    # Codes have their own rows: the password step is not blocked by them.
    assert _password(client).headers["Location"] == VERIFY


def test_the_pending_step_expires_and_a_password_change_voids_it(
    client: Any, session: Session, boss: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enrol(client)
    client.post("/auth/logout")
    _password(client)
    assert client.get(VERIFY).status_code == 200
    boss.password_hash = boss.password_hash + "-changed"  # e.g. a reset meanwhile
    session.commit()
    assert client.get(VERIFY).headers["Location"] == "/auth/login"
    boss.password_hash = boss.password_hash.removesuffix("-changed")
    session.commit()
    _password(client)
    monkeypatch.setattr(signin, "PENDING_TTL_S", 0)
    assert client.get(VERIFY).headers["Location"] == "/auth/login"


def test_a_session_without_the_second_step_never_becomes_an_admin_session(
    client: Any, auth: Any, session: Session
) -> None:
    ann = make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    assert client.get("/").headers["Location"] == "/wizard/"
    ann.role = Role.ADMIN.value  # promoted while signed in (infra create-admin on her address)
    session.commit()
    assert client.get("/admin/cohort").headers["Location"].startswith("/auth/login")
    assert client.get("/").headers["Location"].startswith("/auth/login")


def test_students_sign_in_in_one_step(client: Any, auth: Any, session: Session) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    assert auth.login("ann@example.com").headers["Location"] == "/"
    assert session.scalar(select(func.count()).select_from(TotpFactor)) == 0
    assert client.get(VERIFY).headers["Location"] == "/"  # signed in: home, no second step
