"""The outbox's send side: claims by compare-and-set, takeover of dead claims, one effect per key."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.db import make_sessionmaker
from core.db import utcnow
from core.models import OutboxMessage
from portal import outbox_sender
from tests.portal import prefect_support


def _scope(engine: Engine) -> Any:
    return outbox_sender.scope_of(make_sessionmaker(engine))


def _enqueue(session: Session, key: str, provision_id: int = 7) -> int:
    row = outbox.enqueue(
        session,
        key=key,
        deployment="refresh-dashboard/on-demand",
        parameters={"provision_id": provision_id},
    )
    session.commit()
    return row.id


def test_a_row_is_claimed_once_and_a_dead_claim_is_taken_over(
    session: Session, engine: Engine
) -> None:
    message_id = _enqueue(session, "k:claim")
    scope = _scope(engine)
    with scope() as s:
        first = outbox.claim(s, message_id)
    with scope() as s:
        assert outbox.claim(s, message_id) is None  # a live claim holds
    assert first is not None and first.parameters == {"provision_id": 7}
    # The first sender died: its claim ages past the timeout and another sender takes over.
    session.execute(
        OutboxMessage.__table__.update().values(
            claimed_at=utcnow() - outbox.CLAIM_TIMEOUT - timedelta(seconds=1)
        )
    )
    session.commit()
    with scope() as s:
        second = outbox.claim(s, message_id)
    assert second is not None and second.token != first.token
    with scope() as s:
        assert outbox.mark_sent(s, first, "run-of-the-dead") is False  # its claim is gone
        assert outbox.mark_sent(s, second, "run-1") is True
    session.expire_all()
    row = session.get(OutboxMessage, message_id)
    assert row is not None and (row.result, row.attempts) == ("run-1", 2) and row.sent_at
    with scope() as s:
        assert outbox.claim(s, message_id) is None  # sent rows are never claimed again


def test_a_failed_send_records_the_error_and_backs_off(session: Session, engine: Engine) -> None:
    message_id = _enqueue(session, "k:fail")

    def down(_message: outbox.Message) -> str:
        raise ConnectionError("prefect is down")

    assert outbox.send_due(_scope(engine), down) == {}
    session.expire_all()
    row = session.get(OutboxMessage, message_id)
    assert row is not None and row.sent_at is None and row.claim_token is None
    assert "prefect is down" in (row.last_error or "")
    assert row.next_attempt_at > utcnow()
    # Not due yet: nobody claims it until the backoff has passed.
    assert outbox.send_due(_scope(engine), lambda _m: "never") == {}


def test_a_rolled_back_transaction_leaves_no_row(session: Session) -> None:
    outbox.enqueue(session, key="k:rolled", deployment="d/x", parameters={})
    session.rollback()
    assert session.scalars(select(OutboxMessage)).all() == []


@pytest.mark.postgres_only
def test_two_senders_perform_each_row_once(session: Session, engine: Engine) -> None:
    for i in range(30):
        outbox.enqueue(session, key=f"k:race:{i}", deployment="d/x", parameters={"i": i})
    session.commit()
    performed: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def perform(message: outbox.Message) -> str:
        with lock:
            performed[message.key] += 1
        return f"run-{message.key}"

    def sender() -> None:
        barrier.wait()
        outbox.send_due(_scope(engine), perform)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(performed) == 30 and set(performed.values()) == {1}
    assert session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))).all() == []


@pytest.mark.prefect
def test_a_crash_between_send_and_record_still_starts_one_run(
    app_factory: Any, portal_prefect: str, session: Session
) -> None:
    """The sender starts the run, dies before recording it; the next sender gets the same run."""
    app: Flask = app_factory(prefect_api_url=portal_prefect)
    outbox.enqueue(
        session,
        key="checkout:cs_test_crash",
        deployment="provision/on-demand",
        parameters={"provision_id": 4242},
    )
    session.commit()
    before = prefect_support.run_ids(portal_prefect, "provision/on-demand")
    scope = outbox_sender.scope_of(app.extensions["portal_db"].factory)
    perform = outbox_sender.perform_with(portal_prefect)
    with scope() as s:
        message = outbox.claim(s, outbox.due_ids(s)[0])
    assert message is not None
    first_run = perform(message)  # ... and the process dies here, before mark_sent
    session.execute(
        OutboxMessage.__table__.update().values(
            claimed_at=utcnow() - outbox.CLAIM_TIMEOUT - timedelta(seconds=1)
        )
    )
    session.commit()
    sent = outbox.send_due(scope, perform)
    assert sent == {"checkout:cs_test_crash": first_run}
    new = prefect_support.run_ids(portal_prefect, "provision/on-demand") - before
    assert new == {first_run}
