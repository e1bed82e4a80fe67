"""What a run may still write once its order is cancelled or a newer run claimed it: nothing.

A cancellation (or a newer claim) can land at any point between a run's fence check and its
write. These tests put it exactly there: between the warmup step's last check and its switch,
between the finish step's check and its activation, and before a wait is recorded.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from clients.plusvibe import PlusVibeClient
from core.cancellation import request_cancellation
from core.models import Provision
from flows.provision import provision
from tasks import cancellation
from tasks import guards
from tasks import records
from tasks import runtime
from tests.factories import make_paid_provision
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_run_state import student_mail

# How long the test lets the release run's warmup step try to run before the zombie's switch.
RELEASE_HEAD_START_S = 3.0


def _waiting_for(session: Session, provision_id: int) -> str | None:
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None
    return row.waiting_for


def test_a_run_of_a_cancelled_order_records_no_wait(fast: Session) -> None:
    row = make_paid_provision(fast, email="waitgone@student.test", domains=["waitgone0.com"])
    fast.commit()
    assert request_cancellation(fast, row.id, reason="student cancelled")
    fast.commit()

    # A wait left on a cancelled order is one the sweeper would resume.
    with pytest.raises(guards.StaleRunError):
        records.mark_waiting(row.id, "wait_domains", waiting_for="domains_active", summary="x")

    assert _waiting_for(fast, row.id) is None


def test_a_zombie_records_no_wait_and_the_current_run_does(fast: Session) -> None:
    row = make_paid_provision(fast, email="waitzombie@student.test", domains=["waitzomb0.com"])
    row.run_epoch = 2  # a newer run claimed the order
    fast.commit()
    guards.remember_claim(row.id, 1)  # this process still holds the older claim

    with pytest.raises(guards.StaleRunError):
        records.mark_waiting(row.id, "wait_domains", waiting_for="domains_active", summary="x")
    assert _waiting_for(fast, row.id) is None

    guards.remember_claim(row.id, 2)  # the current run
    assert records.mark_waiting(row.id, "wait_domains", waiting_for="domains_active", summary="x")
    fast.expire_all()
    first = fast.get(Provision, row.id)
    assert first is not None and first.waiting_for == "domains_active"
    since = first.waiting_since
    assert records.mark_waiting(row.id, "wait_domains", waiting_for="domains_active", summary="x")
    fast.expire_all()
    again = fast.get(Provision, row.id)
    assert again is not None and again.waiting_since == since  # the same wait, not a new one


@pytest.mark.prefect
def test_warmup_switched_on_as_the_release_pauses_it_ends_paused(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision_id = pipeline.paid_provision(email="warmrace@student.test")
    settings_update = PlusVibeClient.bulk_update_accounts
    release: dict[str, Any] = {}

    def cancelled_between_check_and_switch(self: PlusVibeClient, *args: Any, **kwargs: Any) -> Any:
        # The warmup step has passed its last fence check; now the order is cancelled and the
        # release run's warmup step runs (in its own thread, as in its own process).
        answer = settings_update(self, *args, **kwargs)
        if release:
            return answer
        with runtime.db() as session:
            assert request_cancellation(session, provision_id, reason="student cancelled")

        def release_warmup() -> None:
            records.prepare_steps(provision_id, cancellation.CANCEL_STEPS)  # as its first step does
            release["paused"] = cancellation.pause_warmup.fn(provision_id)

        # With this test's Prefect settings (context variables), as the release's own process has.
        context = contextvars.copy_context()
        release["thread"] = threading.Thread(
            target=context.run, args=(release_warmup,), daemon=True
        )
        release["thread"].start()
        release["thread"].join(RELEASE_HEAD_START_S)
        return answer

    monkeypatch.setattr(PlusVibeClient, "bulk_update_accounts", cancelled_between_check_and_switch)

    result = provision(provision_id)

    release["thread"].join(30)
    assert not release["thread"].is_alive()
    assert result["status"] == "stale"
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None and row.status == "cancelled" and row.plusvibe_workspace_id
    accounts = list(runtime.plusvibe().iter_accounts(row.plusvibe_workspace_id))
    assert len(accounts) == 6
    # The release came after the switch (it waited for it), so it paused all six.
    assert release["paused"] == 6
    assert not [a.email for a in accounts if a.warmup_active]


@pytest.mark.prefect
def test_a_cancellation_landing_just_before_the_activation_write_wins(
    pipeline: Pipeline,
) -> None:
    provision_id = pipeline.paid_provision(email="lastmoment@student.test")
    landed: list[str] = []

    def cancelled_just_before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The finish step has passed its fence check; its activation write is about to run.
        flat = " ".join(statement.split()).upper()
        if (
            landed
            or not flat.startswith("UPDATE PROVISIONS SET STATUS")
            or "ACTIVATED_AT" not in flat
        ):
            return
        landed.append(statement)
        with Session(runtime.engine()) as other:
            assert request_cancellation(other, provision_id, reason="student cancelled")
            other.commit()

    engine = runtime.engine()
    event.listen(engine, "before_cursor_execute", cancelled_just_before)
    try:
        state = provision(provision_id, return_state=True)
    finally:
        event.remove(engine, "before_cursor_execute", cancelled_just_before)

    assert landed, "the cancellation never landed before the activation write"
    # A compare-and-set lost, not the database trigger: the run ends quietly, not failed.
    assert state.is_completed(), state.message
    assert state.result()["status"] == "stale"
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    assert row.status == "cancelled" and row.activated_at is None
    assert row.status_reason == "student cancelled"
    keys = student_mail(pipeline, provision_id)
    assert not [k for k in keys if k.startswith(("provision-active", "provision-failed"))]
