"""progress.json's conditional requests: ETag, 304 without a body, and nothing stale or leaked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import ProvisioningStep
from core.models import Role
from core.pipeline import PROVISION_STEPS
from portal import progress
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.portal.helpers import signed_in

RUNNING = {
    "zapmail_workspace": "completed",
    "buy_domains": "completed",
    "wait_domains": "running",
}


@pytest.fixture
def ann(session: Session, auth: Any) -> Any:
    """A signed-in student whose setup is under way (a step running)."""
    user = make_user(session, "ann@example.com")
    provision = make_provision(
        session, user, status="provisioning", paid_at=utcnow() - timedelta(minutes=10)
    )
    set_steps(session, provision, RUNNING)
    session.commit()
    auth.login("ann@example.com")
    return provision


def poll(client: Any, etag: str | None = None) -> Any:
    """One poll as the progress page sends it."""
    headers = {"Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    return client.get("/progress.json", headers=headers)


def _step(session: Session, provision: Any, key: str) -> ProvisioningStep:
    row = session.scalar(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision.id, ProvisioningStep.step_key == key
        )
    )
    assert row is not None
    return row


@pytest.mark.usefixtures("ann")
def test_same_etag_answers_304_without_a_body(client: Any) -> None:
    first = poll(client)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = poll(client, etag)
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    # Still private and never stored; the security headers are still there.
    assert again.headers["Cache-Control"] == "no-store"
    assert again.headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_clock_moving_keeps_the_tag(client: Any, ann: Any, session: Session) -> None:
    snapshot = progress.load_snapshot(session, ann.user_id)
    assert snapshot is not None
    now = utcnow()
    before = progress.build_document(snapshot, now)
    later = progress.build_document(snapshot, now + timedelta(minutes=5))
    assert later["elapsed_s"] == before["elapsed_s"] + 300
    assert later["remaining_s"] < before["remaining_s"]
    running = next(s for s in later["steps"] if s["status"] == "running")
    assert running["counting"] and running["slow_s"] > running["typical_s"]
    # Same rows, same tag: the page advances these durations itself (app.js, advance()).
    assert poll(client).headers["ETag"] == poll(client).headers["ETag"]


def test_a_step_change_is_a_200_with_a_new_etag(client: Any, ann: Any, session: Session) -> None:
    first = poll(client)
    etag = first.headers["ETag"]
    set_steps(session, ann, {**RUNNING, "wait_domains": "completed", "dmarc": "running"})
    session.commit()
    changed = poll(client, etag)
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json["done"] == first.json["done"] + 1
    assert changed.json["current"] == "Email authentication"
    assert poll(client, changed.headers["ETag"]).status_code == 304


@pytest.mark.parametrize(
    "sql",
    [
        # Written without touching updated_at: the tag follows the content, not a timestamp.
        "UPDATE provisioning_steps SET error_message = 'Still trying.' WHERE step_key = 'wait_domains'",
        "UPDATE provisioning_steps SET details = '{\"waiting\": \"2 of 3 domains live\"}' WHERE step_key = 'wait_domains'",
        "UPDATE provisioning_steps SET attempt = 2 WHERE step_key = 'wait_domains'",
        "UPDATE provisioning_steps SET started_at = started_at - interval '1 minute' WHERE step_key = 'wait_domains'",
        "DELETE FROM provisioning_steps WHERE step_key = 'wait_domains'",
        "UPDATE provisions SET status = 'failed', remedy = 'refund'",
        "UPDATE provisions SET status_reason = 'Card declined.'",
    ],
)
@pytest.mark.usefixtures("ann")
def test_any_change_to_what_the_page_shows_changes_the_tag(
    client: Any, session: Session, sql: str
) -> None:
    if session.get_bind().dialect.name != "postgresql":
        sql = sql.replace("started_at - interval '1 minute'", "NULL")
    etag = poll(client).headers["ETag"]
    session.execute(text(sql))
    session.commit()
    answer = poll(client, etag)
    assert answer.status_code == 200
    assert answer.headers["ETag"] != etag


def test_a_new_step_row_changes_the_tag(client: Any, ann: Any, session: Session) -> None:
    etag = poll(client).headers["ETag"]
    session.add(
        ProvisioningStep(provision_id=ann.id, step_key="upgrade-1:buy_domains", status="running")
    )
    session.commit()
    assert poll(client, etag).status_code == 200


def test_another_students_etag_never_matches(
    app: Flask, client: Any, ann: Any, session: Session
) -> None:
    # Bob's setup is in exactly the same state, down to the timestamps.
    bob = make_user(session, "bob@example.com")
    bob_provision = make_provision(session, bob, status="provisioning", paid_at=ann.paid_at)
    for key in PROVISION_STEPS:
        mine = _step(session, ann, key)
        session.add(
            ProvisioningStep(
                provision_id=bob_provision.id,
                step_key=key,
                position=mine.position,
                status=mine.status,
                attempt=mine.attempt,
                started_at=mine.started_at,
                finished_at=mine.finished_at,
            )
        )
    session.commit()
    bob_client = signed_in(app, "bob@example.com")
    bob_answer = poll(bob_client)
    assert bob_answer.json["provision_id"] == bob_provision.id
    ann_answer = poll(client, bob_answer.headers["ETag"])
    assert ann_answer.status_code == 200
    assert ann_answer.json["provision_id"] == ann.id
    assert ann_answer.headers["ETag"] != bob_answer.headers["ETag"]
    # And the other way round.
    assert poll(bob_client, ann_answer.headers["ETag"]).json["provision_id"] == bob_provision.id


@pytest.mark.usefixtures("ann")
def test_signed_out_and_admins_get_what_they_got_before(
    client: Any, session: Session, auth: Any
) -> None:
    etag = poll(client).headers["ETag"]
    auth.logout()
    anonymous = poll(client, etag)
    assert anonymous.status_code == 401 and "ETag" not in anonymous.headers
    make_user(session, "coach@example.com", role=Role.ADMIN)
    session.commit()
    auth.login("coach@example.com")
    admin = poll(client, etag)
    assert admin.status_code == 403 and "ETag" not in admin.headers


@pytest.mark.usefixtures("ann")
def test_polls_do_not_reissue_the_session_cookie(client: Any) -> None:
    first = poll(client)
    assert "Set-Cookie" not in first.headers
    assert "Set-Cookie" not in poll(client, first.headers["ETag"]).headers


@pytest.mark.usefixtures("ann")
def test_a_304_is_two_queries(app: Flask, client: Any) -> None:
    etag = poll(client).headers["ETag"]
    engine = app.extensions["portal_db"].engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        assert poll(client, etag).status_code == 304
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    # The signed-in user, then the provision with its steps.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 2


@pytest.mark.usefixtures("ann")
def test_a_deploy_invalidates_old_tags(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    etag = poll(client).headers["ETag"]
    monkeypatch.setattr(progress, "_CODE_VERSION", b"another release")
    assert poll(client, etag).status_code == 200


def test_the_query_reads_the_same_document_on_both_backends(backend_session: Session) -> None:
    user = make_user(backend_session, "cy@example.com")
    provision = make_provision(backend_session, user, status="provisioning", paid_at=utcnow())
    set_steps(backend_session, provision, RUNNING)
    _step(backend_session, provision, "wait_domains").details = {
        "waiting": "1 of 3 live",
        "waits": 4,
    }
    backend_session.commit()
    snapshot = progress.load_snapshot(backend_session, user.id)
    assert snapshot is not None
    data = progress.build_document(snapshot)
    wait = next(s for s in data["steps"] if s["key"] == "wait_domains")
    assert wait["waiting"] == "1 of 3 live" and wait["status"] == "running"
    assert data["done"] == 2 and data["provision_id"] == provision.id
    # The wait counter next to the note is not shown: bumping it keeps the version.
    _step(backend_session, provision, "wait_domains").details = {
        "waiting": "1 of 3 live",
        "waits": 5,
    }
    backend_session.commit()
    again = progress.load_snapshot(backend_session, user.id)
    assert again is not None and again.version == snapshot.version
    assert progress.load_snapshot(backend_session, user.id + 1) is None
