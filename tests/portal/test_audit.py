"""The audit log: account events with who, when and from where, and the admins' page over it."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditLog
from core.models import Notification
from core.models import Role
from core.models import User
from portal.admin import audit as audit_page
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.two_factor_support import login

BROWSER = {"User-Agent": "Mozilla/5.0 (AuditTest) Firefox/140.0"}
FROM = {"REMOTE_ADDR": "203.0.113.7"}


def _rows(session: Session, action: str | None = None) -> list[AuditLog]:
    session.expire_all()
    stmt = select(AuditLog).order_by(AuditLog.id)
    return list(session.scalars(stmt.where(AuditLog.action == action) if action else stmt))


def _sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/auth/login",
        data={"email": email, "password": password},
        headers=BROWSER,
        environ_base=FROM,
    )


def _admin(app: Flask, session: Session) -> tuple[Any, User]:
    boss = make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    client = app.test_client()
    login(client, boss.email)
    return client, boss


def test_sign_in_and_out_are_audited_with_who_when_and_where(client: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    session.commit()
    before = datetime.now(UTC)
    assert _sign_in(client, "ann@example.com").status_code == 302
    client.post("/auth/logout", headers=BROWSER, environ_base=FROM)
    rows = _rows(session)
    assert [(r.action, r.actor_id, r.target_type, r.target_id) for r in rows] == [
        ("sign_in", ann.id, "user", ann.id),
        ("sign_out", ann.id, "user", ann.id),
    ]
    for row in rows:
        assert (row.ip, row.user_agent) == ("203.0.113.7", BROWSER["User-Agent"])
        assert before <= row.created_at <= datetime.now(UTC)


def test_a_burst_of_failed_sign_ins_is_one_row_per_throttle_trip(
    app: Flask, client: Any, session: Session
) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 3
    ann = make_user(session, "ann@example.com")
    session.commit()
    for expected in (401, 401, 401, 429, 429, 429):
        assert _sign_in(client, "ann@example.com", "wrong-wrong-wrong").status_code == expected
    for _ in range(3):
        _sign_in(client, "nobody@example.com", "wrong-wrong-wrong")
    rows = _rows(session, "sign_in_throttled")
    assert [(r.actor_id, r.target_id, r.details, r.ip) for r in rows] == [
        (None, ann.id, {"email": "ann@example.com"}, "203.0.113.7"),
        (None, None, {"email": "nobody@example.com"}, "203.0.113.7"),
    ]
    assert _rows(session, "sign_in") == []


def test_a_reset_request_and_its_completion_are_audited(client: Any, session: Session) -> None:
    ann = make_user(session, "ann@example.com")
    session.commit()
    for email in ("ann@example.com", "ghost@example.com"):
        client.post("/auth/forgot", data={"email": email}, headers=BROWSER, environ_base=FROM)
    requested = _rows(session, "password_reset_requested")
    assert [(r.actor_id, r.target_id, r.details) for r in requested] == [
        (None, ann.id, {"email": "ann@example.com", "emailed": True}),
        (None, None, {"email": "ghost@example.com", "emailed": False}),
    ]
    body = session.scalars(select(Notification.body)).one()
    token = re.search(r"token=([A-Za-z0-9_-]+)", body).group(1)  # type: ignore[union-attr]
    other = client.application.test_client()
    _sign_in(other, "ann@example.com")
    client.get(f"/auth/reset?token={token}")
    new = "plum-kettle-orbit-9"
    client.post("/auth/reset", data={"password": new, "confirm": new}, headers=BROWSER)
    (done,) = _rows(session, "password_reset_completed")
    assert (done.actor_id, done.target_id, done.details) == (ann.id, ann.id, {"sessions_ended": 1})
    assert done.user_agent == BROWSER["User-Agent"]


def test_an_admin_signs_a_student_out_everywhere_from_the_order_page(
    app: Flask, session: Session
) -> None:
    ann = make_user(session, "ann@example.com")
    provision = make_provision(session, ann, status="active")
    session.commit()
    laptop, phone = app.test_client(), app.test_client()
    for device in (laptop, phone):
        login(device, ann.email)
        assert device.get("/progress.json").status_code == 200
    admin, boss = _admin(app, session)
    page = admin.get(f"/admin/provisions/{provision.id}").get_data(as_text=True)
    action = f"/admin/provisions/{provision.id}/sign-out-everywhere"
    assert f'action="{action}"' in page and "Sign out everywhere" in page
    response = admin.post(action, follow_redirects=True)
    assert "Signed ann@example.com out everywhere (2 sessions ended)." in response.get_data(
        as_text=True
    )
    for device in (laptop, phone):
        assert device.get("/progress.json").status_code == 401
    assert admin.get("/admin/cohort").status_code == 200  # the admin's own session goes on
    (row,) = _rows(session, "sessions_revoked")
    assert (row.actor_id, row.target_type, row.target_id) == (boss.id, "user", ann.id)
    assert row.details == {"provision_id": provision.id, "sessions_ended": 2}
    assert admin.post("/admin/provisions/999999/sign-out-everywhere").status_code == 404


def _seed(session: Session, boss: User, ann: User, bob: User, order: int) -> None:
    rows = [
        ("tier_created", boss.id, "tier", 1, datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("sign_in", ann.id, "user", ann.id, datetime(2026, 3, 2, 23, 59, tzinfo=UTC)),
        (
            "provision_cancelled",
            boss.id,
            "provision",
            order,
            datetime(2026, 3, 3, 0, 0, tzinfo=UTC),
        ),
        ("sign_in", bob.id, "user", bob.id, datetime(2026, 3, 4, 12, tzinfo=UTC)),
    ]
    for action, actor, kind, target, at in rows:
        session.add(
            AuditLog(
                action=action,
                actor_id=actor,
                target_type=kind,
                target_id=target,
                created_at=at,
                ip="198.51.100.4",
                user_agent="curl/8.9",
            )
        )
    session.commit()


def _cells(body: str) -> list[str]:
    """The (action, who) pairs a page lists, seeded rows only (the admin's own sign-in aside)."""
    cells = re.findall(
        r"<tr>\s*<td class=\"nowrap\">2026-03[^<]*</td>\s*<td>([^<]*)</td>\s*"
        r"<td><strong>([^<]*)</strong>",
        body,
    )
    return [f"{action} by {who}" for who, action in cells]


def _listed(admin: Any, **query: str) -> list[str]:
    response = admin.get("/admin/audit", query_string=query)
    assert response.status_code == 200, response.status_code
    return _cells(response.get_data(as_text=True))


def test_the_audit_page_lists_newest_first_and_filters(app: Flask, session: Session) -> None:
    admin, boss = _admin(app, session)
    ann = make_user(session, "ann@example.com")
    bob = make_user(session, "bob@example.com")
    order = make_provision(session, ann, status="active").id
    _seed(session, boss, ann, bob, order)
    assert _listed(admin) == [
        "sign in by bob@example.com",
        "provision cancelled by boss@example.com",
        "sign in by ann@example.com",
        "tier created by boss@example.com",
    ]
    page = admin.get("/admin/audit").get_data(as_text=True)
    assert "198.51.100.4" in page and "curl/8.9" in page and "Audit log</a>" in page
    assert f"ann@example.com · order #{order}" in page
    assert _listed(admin, actor="BOSS@example.com") == [
        "provision cancelled by boss@example.com",
        "tier created by boss@example.com",
    ]
    assert _listed(admin, action="sign_in") == [
        "sign in by bob@example.com",
        "sign in by ann@example.com",
    ]
    # The student's own events and those on their order.
    assert _listed(admin, student="ann@example.com") == [
        "provision cancelled by boss@example.com",
        "sign in by ann@example.com",
    ]
    # Whole days, inclusive, in UTC.
    assert _listed(admin, since="2026-03-02", until="2026-03-02") == ["sign in by ann@example.com"]
    assert _listed(admin, since="2026-03-03") == [
        "sign in by bob@example.com",
        "provision cancelled by boss@example.com",
    ]
    assert _listed(admin, actor="nobody@example.com") == []
    assert _listed(admin, student="boss@example.com", action="sign_in") == []


def test_the_audit_page_pages_and_refuses_bad_filters(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, boss = _admin(app, session)
    ann = make_user(session, "ann@example.com")
    bob = make_user(session, "bob@example.com")
    _seed(session, boss, ann, bob, make_provision(session, ann).id)
    monkeypatch.setattr(audit_page, "PER_PAGE", 2)
    first = admin.get("/admin/audit", query_string={"since": "2026-03-01", "until": "2026-03-31"})
    body = first.get_data(as_text=True)
    assert "Older →" in body and "← Newer" not in body
    assert _cells(body) == ["sign in by bob@example.com", "provision cancelled by boss@example.com"]
    older = re.search(r'href="(/admin/audit\?[^"]*page=2[^"]*)"', body)
    assert older and "since=2026-03-01" in older.group(1)
    second = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "← Newer" in second and "Older →" not in second and "Page 2" in second
    assert _cells(second) == ["sign in by ann@example.com", "tier created by boss@example.com"]
    for query, message in (
        ({"since": "March"}, "From: enter a date as YYYY-MM-DD."),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "From is after To."),
        ({"page": "0"}, "page: a page number, please."),
        ({"actor": "a\x00b"}, "actor: too long or not text."),
    ):
        response = admin.get("/admin/audit", query_string=query)
        text = response.get_data(as_text=True)
        assert response.status_code == 400 and message in text, query
        assert "No audit entries match these filters." in text
