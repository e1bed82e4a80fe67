"""Cohorts: create one, preview a CSV with every bad row by line, import all or nothing, invite."""

from __future__ import annotations

import io
import re
from datetime import date
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.accounts import token_hash
from core.db import utcnow
from core.models import AuditLog
from core.models import Cohort
from core.models import Notification
from core.models import PasswordToken
from core.models import Role
from core.models import User
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.helpers import AuthActions
from tests.reliability.test_web_security import fingerprint

GOOD = "email,first name,last name\nann@example.com,Ann,Lee\nbob@example.com,Bob,Ray\n"
LINK = re.compile(r"http://portal\.test/auth/invite\?token=([A-Za-z0-9_-]+)")


def make_cohort(session: Session, name: str = "Spring 2027") -> Cohort:
    """A cohort starting on 1 March 2027."""
    cohort = Cohort(name=name, starts_on=date(2027, 3, 1), instructor="Ida Bell")
    session.add(cohort)
    session.flush()
    return cohort


@pytest.fixture
def cohort(session: Session) -> Cohort:
    """The cohort Spring 2027, committed."""
    spring = make_cohort(session)
    session.commit()
    return spring


# The admin's own sign-in is audited too; these tests look at what the admin then did.
ACCOUNT_ACTIONS = ("sign_in", "two_factor_enrolled")


def _admin_actions(session: Session) -> list[str]:
    """The audit log's actions, oldest first, without the admin's sign-in rows."""
    rows = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    return [action for action in rows if action not in ACCOUNT_ACTIONS]


def admin_client(app: Flask, session: Session) -> Any:
    """A client signed in as an admin."""
    make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    client = app.test_client()
    # The password step answers 302; AuthActions then passes the admin's second step.
    assert AuthActions(client).login("boss@example.com").status_code == 302
    return client


def import_csv(client: Any, cohort_id: int, text: str, *, confirm: bool) -> Any:
    """Preview (or, confirmed, import) ``text`` as the cohort's student list."""
    data = {"csv_text": text, "confirm": "yes" if confirm else ""}
    return client.post(f"/admin/cohorts/{cohort_id}/import", data=data)


def invite_links(session: Session) -> dict[str, str]:
    """The newest invitation token per recipient, read from the queued emails."""
    session.expire_all()
    links = {}
    for email in session.scalars(select(Notification).order_by(Notification.id)):
        match = LINK.search(email.body)
        if match:
            links[email.recipient] = match.group(1)
    return links


def row_states(page: str) -> dict[str, tuple[str, str]]:
    """Each student's (invitation, order) as the cohort page's table shows them."""
    row = re.compile(
        r'<span class="muted small">([^<]+)</span></td>\s*'
        r'<td><span class="badge [^"]+">([^<]+)</span></td>\s*'
        r'<td><span class="badge [^"]+">([^<]+)</span></td>'
    )
    return {email: (invite, order) for email, invite, order in row.findall(page)}


def _upload(client: Any, cohort_id: int, data: bytes, **fields: str) -> Any:
    return client.post(
        f"/admin/cohorts/{cohort_id}/import",
        data={"csv_file": (io.BytesIO(data), "students.csv"), **fields},
        content_type="multipart/form-data",
    )


def _students(session: Session, cohort: Cohort) -> list[tuple[str, str]]:
    session.expire_all()
    return list(
        session.execute(
            select(User.email, User.name).where(User.cohort_id == cohort.id).order_by(User.email)
        )
    )


def test_an_admin_creates_a_cohort_once_per_name(app: Flask, session: Session) -> None:
    client = admin_client(app, session)
    form = {"name": "Spring 2027", "starts_on": "2027-03-01", "instructor": "Ida Bell"}
    created = client.post("/admin/cohorts/new", data=form)
    cohort = session.scalars(select(Cohort)).one()
    assert created.status_code == 303
    assert created.headers["Location"] == f"/admin/cohorts/{cohort.id}"
    assert (cohort.starts_on, cohort.instructor) == (date(2027, 3, 1), "Ida Bell")
    again = client.post("/admin/cohorts/new", data=form)
    assert again.status_code == 400
    assert "A cohort already has this name." in again.get_data(as_text=True)
    bad = client.post(
        "/admin/cohorts/new", data={**form, "name": "Fall", "starts_on": "2027-13-01"}
    )
    assert bad.status_code == 400
    assert session.scalar(select(func.count()).select_from(Cohort)) == 1
    listing = client.get("/admin/cohorts").get_data(as_text=True)
    assert "Spring 2027" in listing and "2027-03-01" in listing and "Ida Bell" in listing
    actions = _admin_actions(session)
    assert actions == ["cohort_created"]


def test_a_file_with_bad_rows_is_previewed_line_by_line_and_imports_nothing(
    app: Flask, session: Session, engine: Engine
) -> None:
    client = admin_client(app, session)
    cohort = make_cohort(session)
    other = make_cohort(session, "Winter 2026")
    make_user(session, "taken@example.com").cohort_id = other.id
    make_user(session, "loner@example.com")
    session.commit()
    text = (
        "\ufeffE-Mail;Prénom;Nom\n"
        "ann@example.com;Ann;Lee\n"  # line 2: fine
        "not-an-address;Bob;Ray\n"  # 3
        "ANN@example.com;Ann;Again\n"  # 4: duplicate of line 2 (addresses are case-blind)
        "cy@example.com;Cy;\n"  # 5
        "\n"  # 6: blank lines are skipped
        "boss@example.com;Big;Boss\n"  # 7: the admin
        "taken@example.com;Tak;En\n"  # 8
        "loner@example.com;Lo;Ner\n"  # 9
        ";Dee;Doe\n"  # 10
    )
    before = fingerprint(engine)
    preview = import_csv(client, cohort.id, text, confirm=False)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "Nothing was imported." in page
    for line in (
        "Line 3: not a valid email address",
        "Line 4: duplicate of line 2",
        "Line 5: missing last name",
        "Line 7: already an admin account",
        "Line 8: already a student of the cohort Winter 2026",
        "Line 9: already has a student account outside any cohort",
        "Line 10: missing email",
    ):
        assert line in page
    assert "7 bad rows" in page and "Line 2:" not in page and "Line 6" not in page
    assert "Import 1 student" not in page  # no way to confirm a bad file
    # Even a forged confirmation of the bad file writes nothing.
    assert import_csv(client, cohort.id, text, confirm=True).status_code == 400
    assert fingerprint(engine) == before


def test_a_clean_file_imports_every_student_with_an_invitation_in_one_go(
    app: Flask, session: Session, cohort: Cohort
) -> None:
    client = admin_client(app, session)
    preview = import_csv(client, cohort.id, GOOD, confirm=False)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Every row is fine." in page
    assert "Import 2 students and send their invitations" in page
    assert _students(session, cohort) == []  # a preview writes nothing

    done = import_csv(client, cohort.id, GOOD, confirm=True)
    assert done.status_code == 303 and done.headers["Location"] == f"/admin/cohorts/{cohort.id}"
    assert _students(session, cohort) == [
        ("ann@example.com", "Ann Lee"),
        ("bob@example.com", "Bob Ray"),
    ]
    links = invite_links(session)
    assert sorted(links) == ["ann@example.com", "bob@example.com"]
    email = session.scalars(
        select(Notification).where(Notification.recipient == "ann@example.com")
    ).one()
    assert email.subject == "Your Outbound Portal account for Spring 2027"
    assert "Ida Bell invited you" in email.body and "works once, for 7 days" in email.body
    assert email.key.startswith("cohort-invite:") and links["ann@example.com"] not in email.key
    # Only hashes at rest; each link lives 7 days (the setting).
    tokens = session.scalars(select(PasswordToken).order_by(PasswordToken.id)).all()
    assert [t.token_hash for t in tokens] == [token_hash(links[e]) for e in sorted(links)]
    assert all(
        timedelta(days=7) - (t.expires_at - t.created_at) < timedelta(seconds=1) for t in tokens
    )
    # Nobody can sign in to an invited account before choosing a password.
    ann = session.scalars(select(User).where(User.email == "ann@example.com")).one()
    assert ann.password_hash.startswith(app.config["PASSWORD_HASH_METHOD"] + "$")
    for guess in (PASSWORD, "", ann.password_hash):
        login = app.test_client().post("/auth/login", data={"email": ann.email, "password": guess})
        assert login.status_code in (400, 401)
    audit = session.scalars(
        select(AuditLog).where(AuditLog.action == "cohort_students_imported")
    ).one()
    assert audit.target_id == cohort.id and audit.details["count"] == 2
    students = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Imported 2 students and queued their invitations." in students
    assert row_states(students) == {
        "ann@example.com": ("Invited", "No order"),
        "bob@example.com": ("Invited", "No order"),
    }

    # The same file again: both are in this cohort already, nothing changes.
    again = import_csv(client, cohort.id, GOOD, confirm=False).get_data(as_text=True)
    assert again.count("already in this cohort: left as is") == 2
    import_csv(client, cohort.id, GOOD, confirm=True)
    assert len(invite_links(session)) == 2
    assert session.scalar(select(func.count()).select_from(Notification)) == 2


def test_an_uploaded_file_is_previewed_then_imported_from_the_preview(
    app: Flask, session: Session, cohort: Cohort
) -> None:
    client = admin_client(app, session)
    # A file is always previewed first, even sent with a confirmation.
    preview = _upload(client, cohort.id, ("\ufeff" + GOOD).encode("utf-8"), confirm="yes")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Every row is fine." in page
    assert _students(session, cohort) == []
    carried = re.search(r'<textarea name="csv_text" hidden>\n(.*?)</textarea>', page, re.S)
    assert carried and "bob@example.com,Bob,Ray" in carried.group(1)
    assert import_csv(client, cohort.id, carried.group(1), confirm=True).status_code == 303
    assert len(_students(session, cohort)) == 2

    refused = _upload(
        client,
        cohort.id,
        "email,first name,last name\nzoe@example.com,Zoë,Ré\n".encode("latin-1"),
    )
    assert refused.status_code == 400
    assert "The file is not UTF-8 text (byte 46); save it as CSV UTF-8." in refused.get_data(
        as_text=True
    )
    too_long = _upload(client, cohort.id, GOOD.encode() + b"," * 500_000)
    assert too_long.status_code == 400
    assert "The file is longer than 500,000 characters." in too_long.get_data(as_text=True)
    empty = client.post(f"/admin/cohorts/{cohort.id}/import", data={"csv_text": "  "})
    assert empty.status_code == 400
    assert "Choose a CSV file, or paste its lines." in empty.get_data(as_text=True)


def test_an_address_taken_between_preview_and_confirmation_imports_nothing(
    app: Flask, session: Session, cohort: Cohort, engine: Engine
) -> None:
    client = admin_client(app, session)
    assert "Every row is fine." in import_csv(client, cohort.id, GOOD, confirm=False).get_data(
        as_text=True
    )
    make_user(session, "bob@example.com")
    session.commit()
    before = fingerprint(engine)
    late = import_csv(client, cohort.id, GOOD, confirm=True)
    assert late.status_code == 400
    assert "Line 3: already has a student account outside any cohort" in late.get_data(as_text=True)
    assert fingerprint(engine) == before


def test_resend_replaces_the_link_and_revoke_withdraws_it(
    app: Flask, session: Session, cohort: Cohort
) -> None:
    client = admin_client(app, session)
    import_csv(client, cohort.id, GOOD, confirm=True)
    ann = session.scalars(select(User).where(User.email == "ann@example.com")).one()
    first = invite_links(session)["ann@example.com"]
    base = f"/admin/cohorts/{cohort.id}/students/{ann.id}"

    assert client.post(f"{base}/resend").status_code == 303
    second = invite_links(session)["ann@example.com"]
    assert second != first
    # The first email was never picked up by a sender: it is dropped, not sent with a dead link.
    assert [n.recipient for n in session.scalars(select(Notification))].count(
        "ann@example.com"
    ) == 1
    old = session.scalars(
        select(PasswordToken).where(PasswordToken.token_hash == token_hash(first))
    ).one()
    assert old.used_at is not None and old.revoked_at is None

    assert client.post(f"{base}/revoke").status_code == 303
    session.expire_all()
    assert session.get(User, ann.id).is_active is False
    page = client.get(f"/admin/cohorts/{cohort.id}").get_data(as_text=True)
    assert "The invitation of ann@example.com is revoked" in page
    assert row_states(page) == {
        "ann@example.com": ("Revoked", "No order"),
        "bob@example.com": ("Invited", "No order"),
    }
    assert client.post(f"{base}/revoke").status_code == 303  # nothing left to revoke
    assert "invitation is revoked: nothing to revoke" in client.get(
        f"/admin/cohorts/{cohort.id}"
    ).get_data(as_text=True)

    # Re-sending a revoked invitation lets the student in again.
    client.post(f"{base}/resend")
    session.expire_all()
    assert session.get(User, ann.id).is_active is True
    actions = _admin_actions(session)
    assert actions == [
        "cohort_students_imported",
        "invite_resent",
        "invite_revoked",
        "invite_resent",
    ]
    # Another cohort's page cannot reach Ann.
    other = make_cohort(session, "Other")
    session.commit()
    assert client.post(f"/admin/cohorts/{other.id}/students/{ann.id}/resend").status_code == 404


def test_the_cohort_page_shows_expired_invites_and_orders(
    app: Flask, session: Session, cohort: Cohort
) -> None:
    client = admin_client(app, session)
    import_csv(client, cohort.id, GOOD, confirm=True)
    bob = session.scalars(select(User).where(User.email == "bob@example.com")).one()
    token = session.scalars(select(PasswordToken).where(PasswordToken.user_id == bob.id)).one()
    token.expires_at = utcnow() - timedelta(minutes=1)
    make_provision(session, bob, status="active")
    session.commit()
    page = client.get(f"/admin/cohorts/{cohort.id}").get_data(as_text=True)
    assert row_states(page) == {
        "ann@example.com": ("Invited", "No order"),
        "bob@example.com": ("Expired", "Active"),
    }


def test_the_cohort_overview_filters_by_cohort(app: Flask, session: Session) -> None:
    client = admin_client(app, session)
    spring, fall = make_cohort(session), make_cohort(session, "Fall 2027")
    make_user(session, "in-spring@example.com").cohort_id = spring.id
    make_user(session, "in-fall@example.com").cohort_id = fall.id
    make_user(session, "no-cohort@example.com")
    session.commit()
    everyone = client.get("/admin/cohort").get_data(as_text=True)
    assert all(e in everyone for e in ("in-spring@", "in-fall@", "no-cohort@"))
    only = client.get(f"/admin/cohort?cohort={fall.id}").get_data(as_text=True)
    assert "in-fall@" in only and "in-spring@" not in only and "no-cohort@" not in only
    assert f'<option value="{fall.id}" selected>Fall 2027</option>' in only
