"""Run state on the flow side: claims with epochs, compare-and-set status changes, fencing.

The fast tests call the claim and the bookkeeping without Prefect (real PostgreSQL, the sandbox
over HTTP); the flow tests run the provisioning flow in-process against a real Prefect server.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy.orm import Session

import flows.provision as provision_flow
from core import outbox
from core.cancellation import request_cancellation
from core.mailboxes import preview_addresses
from core.models import Mailbox
from core.models import Notification
from core.models import Provision
from flows.provision import provision
from tasks import guards
from tasks import runtime
from tasks.claims import claim_provision
from tasks.mailbox_plan import ensure_mailbox_rows
from tasks.mailbox_plan import tier_domains
from tests.factories import make_paid_provision
from tests.flows.conftest import Pipeline


def test_the_sender_writing_this_runs_own_id_mid_claim_is_this_runs_claim(
    fast: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = make_paid_provision(fast, email="race@student.test", domains=["racebrand0.com"])
    fast.commit()
    provision_id, me = row.id, str(uuid4())
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", me)  # this process is that run
    started = outbox.Message(
        id=0,
        key=f"provision:{provision_id}",
        kind="start_deployment",
        deployment=outbox.PROVISION_DEPLOYMENT,
        parameters={"provision_id": provision_id},
        token="t",
    )
    fired: list[str] = []

    def sender_records_the_run(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Between the run's read of the empty holder and its compare-and-set, the outbox
        # sender records the run it started (core/outbox.py fills an empty pointer only).
        if fired or not statement.lstrip().upper().startswith("UPDATE PROVISIONS"):
            return
        fired.append(statement)
        with Session(runtime.engine()) as other:
            outbox._point_at_run(other, started, me)  # noqa: SLF001 - the sender's own write
            other.commit()

    engine = runtime.engine()
    event.listen(engine, "before_cursor_execute", sender_records_the_run)
    try:
        live = claim_provision(provision_id)
    finally:
        event.remove(engine, "before_cursor_execute", sender_records_the_run)

    assert fired, "the sender's write never landed between the read and the compare-and-set"
    assert live is None  # the holder is this run: it proceeds, it is no duplicate of itself
    fast.expire_all()
    claimed = fast.get(Provision, provision_id)
    assert claimed is not None
    assert claimed.current_flow_run_id == me and claimed.run_epoch == 1
    assert guards.claimed_epoch(provision_id) == 1


def test_each_claim_bumps_the_epoch_and_fences_the_older_claim(
    fast: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = make_paid_provision(fast, email="epochs@student.test", domains=["epochbrand0.com"])
    fast.commit()
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(uuid4()))
    assert claim_provision(row.id) is None
    assert claim_provision(row.id) is None  # a retry of the same run claims again
    assert guards.claimed_epoch(row.id) == 2
    guards.remember_claim(row.id, 1)  # an older claim of this provision
    with pytest.raises(guards.StaleRunError, match="newer run"):
        guards.ensure_current(row.id)


def test_the_flow_creates_the_addresses_the_wizard_previewed(fast: Session) -> None:
    domains = ["accentbrand0.com", "accentbrand1.com"]
    patterns = ("{first}.{last}", "{f}{last}", "{first}")
    row = make_paid_provision(
        fast,
        email="zoe@student.test",
        domains=domains,
        first_name="Zoë",
        last_name="O'Neil",
        patterns=patterns,
    )
    fast.commit()
    preview = preview_addresses(domains, list(patterns), "Zoë", "O'Neil")

    created = ensure_mailbox_rows(fast, row, tier_domains(row), len(patterns))
    fast.commit()

    shown = sorted(address for _domain, addresses in preview for address in addresses)
    assert sorted(created) == shown
    assert "zoe.oneil@accentbrand0.com" in created
    stored = fast.execute(select(Mailbox.address, Mailbox.username)).all()
    assert sorted(a for a, _ in stored) == shown
    assert {u for _, u in stored} == {"zoe.oneil", "zoneil", "zoe"}


def student_mail(pipeline: Pipeline, provision_id: int) -> list[str]:
    """The keys of the emails queued for a provision (its student and its admins)."""
    pipeline.session.expire_all()
    return sorted(
        n.key
        for n in pipeline.session.scalars(
            select(Notification).where(Notification.key.like(f"%:{provision_id}%"))
        )
    )


@pytest.mark.prefect
def test_a_cancellation_before_finish_is_never_undone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision_id = pipeline.paid_provision(email="late@student.test")
    list_step = provision_flow.ensure_heyreach_list

    def cancelled_meanwhile(pid: int) -> Any:
        # The student cancels while the run is at its last vendor steps.
        with runtime.db() as session:
            assert request_cancellation(session, pid, reason="student cancelled")
        return list_step(pid)

    monkeypatch.setattr(provision_flow, "ensure_heyreach_list", cancelled_meanwhile)

    state = provision(provision_id, return_state=True)

    # The run ends quietly (no failure to mirror), and changed nothing after the cancellation.
    assert state.is_completed(), state.message
    assert state.result()["status"] == "stale"
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    assert row.status == "cancelled" and row.activated_at is None
    assert row.status_reason == "student cancelled"
    assert row.heyreach_list_id is None
    keys = student_mail(pipeline, provision_id)
    assert not [k for k in keys if k.startswith("provision-active")]
    assert not [k for k in keys if k.startswith("provision-failed")]


@pytest.mark.prefect
def test_a_zombie_with_an_old_epoch_spends_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision_id = pipeline.paid_provision(email="zombie@student.test")
    workspace_step = provision_flow.ensure_zapmail_workspace

    def superseded_meanwhile(pid: int) -> Any:
        # A newer run of the same order claims it (epoch + 1) while this one is still going.
        with runtime.db() as session:
            session.get(Provision, pid).run_epoch += 1  # type: ignore[union-attr]
        return workspace_step(pid)

    monkeypatch.setattr(provision_flow, "ensure_zapmail_workspace", superseded_meanwhile)
    before = len(pipeline.sandbox.ledger())

    result = provision(provision_id)

    assert result["status"] == "stale"
    assert len(pipeline.sandbox.ledger()) == before  # nothing bought, nothing created
    state = pipeline.sandbox.control("GET", "/zapmail/state").json()
    assert not state["domains"] and not state["mailboxes"]
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    assert row.status == "provisioning" and row.zapmail_workspace_id is None
    # The zombie's end is not the order's failure: the newer run owns the story.
    assert not [k for k in student_mail(pipeline, provision_id) if "failed" in k]
