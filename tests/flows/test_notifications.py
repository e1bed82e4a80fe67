"""Notification delivery: each queued email is sent once, across retries, sweeps and concurrent
senders; a refused send waits for a later sweep; failures reach the student and every admin."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.models import Notification
from core.models import Provision
from core.models import Role
from core.pipeline import PROVISION_STEPS
from core.settings import Settings
from flows.sweep_waiting import sweep_waiting
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks.pipeline import finish_provisioning
from tasks.pipeline import mark_provision_failed
from tests.factories import make_paid_provision
from tests.factories import make_provision
from tests.factories import make_user
from tests.flows.conftest import Pipeline
from tests.support.smtp import RecordingHandler
from tests.support.smtp import smtp_server


@pytest.fixture
def use_settings(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Put test settings (plus the given fields) in force for the tasks' runtime."""

    def apply(**fields: Any) -> Settings:
        settings = Settings(
            env="test", database_url=db_url, instance_dir=tmp_path, _env_file=None, **fields
        )
        runtime.use_settings(settings)
        return settings

    yield apply
    runtime.use_settings(None)


@pytest.fixture
def smtp(use_settings: Callable[..., Settings]) -> Iterator[RecordingHandler]:
    """A real local SMTP server, configured as the app's mail server."""
    with smtp_server() as (handler, port):
        use_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        yield handler


def queue(session: Session, count: int, stem: str = "n") -> list[str]:
    keys = [
        notifications.queue(
            session, key=f"{stem}:{i}", recipient=f"s{i}@x.test", subject=f"Hello {i}", body="Hi"
        )
        for i in range(count)
    ]
    session.commit()
    return keys


def age_claims(session: Session, by: timedelta) -> None:
    """Move every claim back in time (what waiting ``by`` would do)."""
    session.expire_all()  # the senders wrote the claims through their own sessions
    for row in session.scalars(select(Notification)):
        if row.claimed_at is not None:
            session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(claimed_at=row.claimed_at - by)
            )
    session.commit()


def test_each_notification_is_sent_once_across_repeated_deliveries(
    session: Session, smtp: RecordingHandler
) -> None:
    keys = queue(session, 3)
    queue(session, 3)  # queueing the same keys again adds nothing

    first = notifications.deliver_pending()
    assert notifications.deliver_pending() == {"sent": [], "failed": []}
    assert notifications.deliver_pending(keys=keys) == {"sent": [], "failed": []}

    assert sorted(first["sent"]) == keys
    assert sorted(m["Subject"] for m in smtp.received) == ["Hello 0", "Hello 1", "Hello 2"]
    rows = session.scalars(select(Notification)).all()
    assert len(rows) == 3 and all(r.sent_at and r.attempts == 1 for r in rows)


@pytest.mark.postgres_only
def test_two_concurrent_deliverers_never_send_the_same_email(
    session: Session, use_settings: Callable[..., Settings]
) -> None:
    keys = queue(session, 40)
    with smtp_server(delay_s=0.01) as (server, port):
        use_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        start = threading.Barrier(2)
        results: list[dict[str, list[str]]] = []

        def deliver() -> None:
            start.wait()
            results.append(notifications.deliver_pending())

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    sent = [key for result in results for key in result["sent"]]
    assert sorted(sent) == sorted(keys)  # every email once, none by both senders
    assert len(server.received) == 40
    assert len({m["Message-ID"] for m in server.received}) == 40


def test_a_refused_send_stays_unsent_until_a_later_sweep(
    session: Session, use_settings: Callable[..., Settings]
) -> None:
    (key,) = queue(session, 1)
    with smtp_server(refuse="451 4.3.0 mailbox busy") as (server, port):
        use_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        assert notifications.deliver_pending() == {"sent": [], "failed": [key]}
        row = session.scalar(select(Notification))
        assert row.sent_at is None and row.attempts == 1 and "451" in (row.last_error or "")
        # Backoff: an immediate second sweep does not hammer the server.
        assert notifications.deliver_pending() == {"sent": [], "failed": []}

        server.refuse = None
        age_claims(session, timedelta(minutes=2))
        assert notifications.deliver_pending() == {"sent": [key], "failed": []}

    assert len(server.received) == 1
    session.expire_all()
    row = session.scalar(select(Notification))
    assert row.sent_at is not None and row.attempts == 2 and row.last_error is None


def test_a_sender_that_died_holding_a_claim_is_taken_over_after_the_lease(
    session: Session, smtp: RecordingHandler
) -> None:
    (key,) = queue(session, 1)
    row = session.scalar(select(Notification))
    # A sender claimed it and died (before or after the server accepted it: we cannot know).
    assert notifications._claim(row, row.created_at) is not None  # noqa: SLF001

    assert notifications.deliver_pending() == {"sent": [], "failed": []}
    age_claims(session, notifications.CLAIM_LEASE + timedelta(seconds=1))
    assert notifications.deliver_pending() == {"sent": [key], "failed": []}
    assert len(smtp.received) == 1


def test_a_failed_provision_emails_the_student_and_every_active_admin(
    session: Session, use_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = use_settings()  # no SMTP host: the demo outbox
    provision = make_paid_provision(session, email="tim@student.test", domains=["tim1.com"])
    make_user(session, "ops@bootcamp.test", role=Role.ADMIN)
    make_user(session, "coach@bootcamp.test", role=Role.ADMIN)
    make_user(session, "gone@bootcamp.test", role=Role.ADMIN).is_active = False
    session.commit()

    for _ in range(2):  # the failure hook may run twice (crash, then cancel): one email each
        mark_provision_failed(provision.id, RuntimeError("HTTP 500 from Zapmail"), "run failed")

    mails = [message_from_bytes(p.read_bytes()) for p in (tmp_path / "outbox").glob("*.eml")]
    assert sorted(m["To"] for m in mails) == [
        "coach@bootcamp.test",
        "ops@bootcamp.test",
        "tim@student.test",
    ]
    student = next(m for m in mails if m["To"] == "tim@student.test")
    admin = next(m for m in mails if m["To"] == "ops@bootcamp.test")
    assert "HTTP 500" not in student.get_payload()  # plain words for the student
    assert "HTTP 500 from Zapmail" in admin.get_payload()
    # What happens next and where to follow it, not a single sentence.
    body = student.get_payload(decode=True).decode()
    assert body.startswith("Hello Tim,")
    assert "Your instructor has been told" in body
    assert f"{settings.public_url}/progress" in body
    assert "What the student was told" in admin.get_payload()
    assert all(r.sent_at for r in session.scalars(select(Notification)))


@pytest.mark.prefect
def test_the_sweeper_sends_what_was_left_unsent(pipeline: Pipeline) -> None:
    (key,) = queue(pipeline.session, 1, stem="left-behind")

    result = sweep_waiting()

    assert result["emails"] == {"sent": [key], "failed": []}
    outbox = Path(pipeline.settings.instance_dir) / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 1


@flow
def finish_only(provision_id: int) -> None:
    """The provisioning flow's last step alone (the steps before it are set up by hand)."""
    finish_provisioning(provision_id)


@pytest.mark.prefect
def test_the_ready_email_says_what_was_set_up_where_to_sign_in_and_when_to_send(
    pipeline: Pipeline,
) -> None:
    session = pipeline.session
    names = ["northwind1.com", "northwind2.com", "northwind3.com"]
    student = make_user(session, "tim@student.test", name="Tim Keen")
    # Bought domains with two mailboxes each, as the steps before "finish" leave them.
    provision = make_provision(
        session,
        student,
        status="provisioning",
        domains=names,
        plusvibe_client_email="tim.keen@plusvibe-client.test",
        heyreach_list_id=42,
    )
    session.commit()
    records.prepare_steps(provision.id, PROVISION_STEPS)

    finish_only(provision.id)

    (mail,) = [
        message_from_bytes(p.read_bytes())
        for p in (Path(pipeline.settings.instance_dir) / "outbox").glob("*.eml")
    ]
    assert mail["Subject"] == "Your outbound infrastructure is ready"
    body = mail.get_payload(decode=True).decode()
    session.expire_all()
    activated = session.get(Provision, provision.id).activated_at
    ready_on = activated + timedelta(days=14)
    assert f"3 domains: {', '.join(names)}" in body
    assert "6 mailboxes" in body and "HeyReach lead list" in body
    assert f"{pipeline.settings.public_url}/dashboard" in body
    assert "https://app.plusvibe.ai/login" in body and "tim.keen@plusvibe-client.test" in body
    assert "we never send it by email" in body
    assert f"before {ready_on.day} {ready_on:%B %Y}" in body
    assert "10 emails a day per mailbox (60 a day in total)" in body
