"""progress.json without the database: an unchanged provision's 304 reads nothing, on PostgreSQL.

The portal keeps each student's tag and session until the change listener hears a change
(portal/change_listener.py, migration 0013's triggers); every write, from this process or another,
voids them, and a listener that cannot vouch sends the poll back to the DB.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Provision
from portal.auth import revoke_all_sessions
from portal.change_listener import ChangeListener
from portal.change_listener import libpq_url
from portal.change_listener import listener_for
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.portal.helpers import signed_in

pytestmark = pytest.mark.postgres_only

RUNNING = {"zapmail_workspace": "completed", "buy_domains": "running"}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (the listener's thread works on its own clock)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def feed(db_url: str) -> ChangeListener:
    """The process's listener on the test DB, once it vouches for what it heard."""
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL")
    listener = listener_for(db_url)
    wait_for(listener.fresh)
    return listener


@pytest.fixture
def ann(session: Session) -> Provision:
    """A student whose setup is under way."""
    user = make_user(session, "ann@example.com")
    provision = make_provision(
        session, user, status="provisioning", paid_at=utcnow() - timedelta(minutes=5)
    )
    set_steps(session, provision, RUNNING)
    session.commit()
    return provision


@contextmanager
def counted(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement and pool checkout of ``app``'s engine meanwhile."""
    engine = app.extensions["portal_db"].engine
    seen: list[str] = []

    def statement(*args: Any) -> None:
        seen.append(args[2])

    def checkout(*_args: Any) -> None:
        seen.append("<checkout>")

    sa_event.listen(engine, "before_cursor_execute", statement)
    sa_event.listen(engine.pool, "checkout", checkout)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", statement)
        sa_event.remove(engine.pool, "checkout", checkout)


def poll(client: Any, etag: str | None = None) -> Any:
    """One poll as the progress page sends it."""
    headers = {"If-None-Match": etag} if etag else {}
    return client.get("/progress.json", headers=headers)


def settled(client: Any) -> str:
    """Poll until the answer is kept (a first poll may come before the listener vouched)."""
    etag = poll(client).headers["ETag"]
    assert poll(client, etag).status_code == 304
    return etag


def slow_hearing(feed: ChangeListener, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the listener take its time over each change notice (a busy process)."""
    hear = feed._hear

    def slowly(payload: str) -> None:
        if payload[:2] in ("p:", "s:"):
            time.sleep(0.3)
        hear(payload)

    monkeypatch.setattr(feed, "_hear", slowly)


def elsewhere(db_url: str, sql: str) -> None:
    """Run ``sql`` in another process, as a flow or the CLI would (no commit of this process)."""
    code = "import psycopg, sys\nwith psycopg.connect(sys.argv[1]) as c: c.execute(sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, libpq_url(db_url), sql], check=True, timeout=60)


@pytest.mark.usefixtures("ann", "feed")
def test_an_unchanged_provisions_304_issues_no_sql(app: Flask) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    with counted(app) as seen:
        again = poll(client, etag)
    assert again.status_code == 304 and again.headers["ETag"] == etag
    # Not even the session lookup or a pooled connection's ping.
    assert seen == []


@pytest.mark.usefixtures("ann", "feed")
def test_without_the_feed_the_same_poll_reads_the_session_and_the_steps(app_factory: Any) -> None:
    # The control for the test above: the counter does see what a 304 costs on the DB path.
    app = app_factory(CHANGE_FEED=False)
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    with counted(app) as seen:
        assert poll(client, etag).status_code == 304
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 2


def test_a_step_written_by_another_process_is_heard(
    db_url: str, ann: Provision, feed: ChangeListener, session: Session
) -> None:
    bob = make_provision(session, make_user(session, "bob@example.com"), status="active")
    session.commit()
    wait_for(feed.fresh)  # this process's own commit holds it back until its notices are heard
    mark = feed.mark()
    assert mark is not None
    assert feed.unchanged(mark, "p", ann.user_id)
    elsewhere(
        db_url,
        f"UPDATE provisioning_steps SET status = 'completed' WHERE provision_id = {ann.id} "
        "AND step_key = 'buy_domains'",
    )
    wait_for(lambda: not feed.unchanged(mark, "p", ann.user_id))
    # Only Ann's: Bob's kept answers stay good, and her sessions too.
    assert feed.unchanged(mark, "p", bob.user_id)
    assert feed.unchanged(mark, "s", ann.user_id)


def test_after_a_write_elsewhere_the_next_poll_is_the_new_document(
    app: Flask, db_url: str, ann: Provision, feed: ChangeListener
) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    elsewhere(
        db_url,
        f"UPDATE provisioning_steps SET status = 'completed', finished_at = now() "
        f"WHERE provision_id = {ann.id} AND step_key = 'buy_domains'",
    )
    assert feed.sync()  # the notice has been heard (a few milliseconds after the commit)
    answer = poll(client, etag)
    assert answer.status_code == 200 and answer.headers["ETag"] != etag
    bought = next(s for s in answer.json["steps"] if s["key"] == "buy_domains")
    assert bought["status"] == "completed"
    assert poll(client, answer.headers["ETag"]).status_code == 304


def test_a_write_of_this_process_is_seen_by_the_very_next_poll(
    app: Flask,
    ann: Provision,
    feed: ChangeListener,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    slow_hearing(feed, monkeypatch)
    # No waiting: this process's commit holds the caches back until its notices are heard.
    set_steps(session, ann, {**RUNNING, "buy_domains": "completed", "wait_domains": "running"})
    session.commit()
    answer = poll(client, etag)
    assert answer.status_code == 200
    assert answer.json["current"] == "Domains go live"


@contextmanager
def listener_down(feed: ChangeListener, db_url: str) -> Iterator[None]:
    """Kill the listener's connection and keep it from coming back (a wrong port) meanwhile."""
    conninfo = feed.conninfo
    feed.conninfo = libpq_url(db_url).replace(":5432/", ":1/")
    try:
        with psycopg.connect(libpq_url(db_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (feed.backend_pid,))
        wait_for(lambda: not feed.connected)
        yield
    finally:
        feed.conninfo = conninfo
    wait_for(feed.fresh)


def test_while_the_listener_is_down_polls_read_the_db(
    app: Flask, db_url: str, ann: Provision, feed: ChangeListener
) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    with listener_down(feed, db_url):
        with counted(app) as seen:
            assert poll(client, etag).status_code == 304
        assert seen  # the session and the steps, read
        elsewhere(
            db_url,
            f"UPDATE provisioning_steps SET status = 'completed' WHERE provision_id = {ann.id} "
            "AND step_key = 'buy_domains'",
        )
        assert poll(client, etag).status_code == 200
    # Back: kept again once read.
    fresh_etag = settled(client)
    with counted(app) as seen:
        assert poll(client, fresh_etag).status_code == 304
    assert seen == []


def test_a_notice_missed_while_disconnected_voids_every_kept_answer(
    app: Flask, db_url: str, ann: Provision, feed: ChangeListener
) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    with listener_down(feed, db_url):
        # Nobody hears this one; and nothing polls until the listener is back.
        elsewhere(
            db_url,
            f"UPDATE provisioning_steps SET status = 'completed' WHERE provision_id = {ann.id} "
            "AND step_key = 'buy_domains'",
        )
    answer = poll(client, etag)
    assert answer.status_code == 200
    assert next(s for s in answer.json["steps"] if s["key"] == "buy_domains")["status"] == (
        "completed"
    )


def test_a_silent_connection_stops_vouching_after_fresh_s(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL")
    # Its one ping comes back, then none for a minute: as if the peer had vanished.
    listener = ChangeListener(db_url, ping_s=60, fresh_s=0.3)
    listener.start()
    try:
        wait_for(listener.fresh)
        assert listener.mark() is not None
        wait_for(lambda: not listener.fresh(), timeout=2)
        assert listener.connected and listener.mark() is None
    finally:
        listener.stop()


def test_sign_out_everywhere_ends_a_kept_session_at_once(
    app: Flask, ann: Provision, feed: ChangeListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = signed_in(app, "ann@example.com")
    phone = signed_in(app, "ann@example.com")
    for client in (laptop, phone):
        settled(client)
    slow_hearing(feed, monkeypatch)
    with app.test_request_context():
        assert revoke_all_sessions(ann.user_id, "admin") == 2
    # The very next polls, without waiting for anything.
    assert poll(laptop).status_code == 401
    assert poll(phone).status_code == 401


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'cli' WHERE user_id = {id}",
        "UPDATE users SET is_active = false WHERE id = {id}",
        "UPDATE users SET role = 'admin' WHERE id = {id}",
    ],
)
def test_a_revocation_by_another_process_ends_a_kept_session(
    app: Flask, db_url: str, ann: Provision, feed: ChangeListener, sql: str
) -> None:
    client = signed_in(app, "ann@example.com")
    etag = settled(client)
    elsewhere(db_url, sql.format(id=ann.user_id))
    assert feed.sync()
    assert poll(client, etag).status_code in (401, 403)


def test_the_trigger_watches_every_provision_column_the_page_reads() -> None:
    from importlib import import_module

    from sqlalchemy import Column
    from sqlalchemy.sql import visitors

    from portal.progress import PROGRESS_QUERY

    migration = import_module("core.migrations.versions.0013_change_notifications")
    # Selected, joined on or filtered by: a change to any of them must be a notice (the id never
    # changes; a new or deleted row always is one).
    read = {
        c.name
        for c in visitors.iterate(PROGRESS_QUERY)
        if isinstance(c, Column) and c.table is Provision.__table__
    }
    assert "status" in read and "user_id" in read
    assert read <= {"id", *migration.PROVISION_COLUMNS}


def test_sqlite_keeps_the_db_path(tmp_path: Any) -> None:
    from core.settings import Settings
    from portal import create_app
    from portal.change_cache import cache

    settings = Settings(
        env="test",
        database_url=f"sqlite:///{tmp_path}/app.db",
        instance_dir=tmp_path,
        _env_file=None,
    )
    app = create_app(settings, TESTING=True)
    with app.app_context():
        assert cache("p") is None and cache("s") is None
