"""Deployed runs on a real process worker: waits suspend and free the process, the sweeper
resumes them; a worker killed mid-purchase and two concurrent runs never pay twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.objects import State
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from core.models import Provision
from core.settings import Settings
from flows.sweep_waiting import sweep_waiting
from tests.flows.conftest import Pipeline
from tests.support.worker import flow_run_processes
from tests.support.worker import read_run
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def start(provision_id: int, key: str | None = None) -> UUID:
    run = run_deployment(
        "provision/on-demand",
        parameters={"provision_id": provision_id},
        timeout=0,
        idempotency_key=key,
    )
    return run.id


def drive(run_ids: list[UUID], *, timeout_s: float = 240) -> list[State[Any]]:
    """Sweep (as the scheduled sweeper would) until every run is final."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [read_run(run_id).state for run_id in run_ids]
        if all(state and state.type in FINAL for state in states):
            return states  # type: ignore[return-value]
        if any(state and state.is_paused() for state in states):
            sweep_waiting()
        time.sleep(0.5)
    raise AssertionError(
        f"runs not final after {timeout_s}s: {[read_run(r).state for r in run_ids]}"
    )


def settled_state(run_id: UUID, *, quiet_s: float) -> StateType | None:
    """The run's state type once its history has not changed for ``quiet_s`` seconds."""
    with get_client(sync_client=True) as client:
        before = len(client.read_flow_run_states(run_id))
        time.sleep(quiet_s)
        states = client.read_flow_run_states(run_id)
    return states[-1].type if len(states) == before else None


def assert_paid_once_and_active(pipeline: Pipeline, provision_id: int) -> None:
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None and row.status == "active"
    purchases = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase"))
    assert purchases == Counter(d.name for d in row.domains)
    created = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_created"))
    assert set(created.values()) == {1} and len(created) == 2 * len(row.domains)


def test_waits_suspend_free_the_process_and_the_sweeper_resumes(
    pipeline: Pipeline, worker: Any
) -> None:
    pipeline.sandbox.configure(
        domain_activation_s=600, mailbox_activation_s=600, export_delay_s=600
    )
    provision_id = pipeline.paid_provision()
    run_id = start(provision_id)

    for waiting_for in ("domains_active", "mailboxes_active", "accounts_connected"):
        wait_for(
            lambda: read_run(run_id).state.is_paused(),
            timeout_s=120,
            what=f"suspend ({waiting_for})",
        )
        pipeline.session.expire_all()
        assert pipeline.session.get(Provision, provision_id).waiting_for == waiting_for
        # Suspended means no process holds the run while the vendor works.
        wait_for(
            lambda: not flow_run_processes(worker.pid), timeout_s=30, what="the process to exit"
        )
        assert sweep_waiting()["resumed"] == []  # not ready yet: nothing is resumed
        pipeline.sandbox.advance(600)
        assert sweep_waiting()["resumed"] == [provision_id]

    (state,) = drive([run_id])
    assert state.is_completed(), state.message
    assert_paid_once_and_active(pipeline, provision_id)


def test_worker_killed_after_the_charge_then_retried_pays_once(
    pipeline: Pipeline, worker: Any
) -> None:
    provision_id = pipeline.paid_provision()
    # The purchase goes through at Zapmail, but its answer never comes back.
    pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="drop_response", hold_s=60
    )
    run_id = start(provision_id)
    wait_for(
        lambda: pipeline.sandbox.ledger(kind="domain_purchase"), timeout_s=120, what="the charge"
    )

    for pid in flow_run_processes(worker.pid):
        os.kill(pid, signal.SIGKILL)
    # The worker notices the dead process and reports the run crashed; an operator retries once
    # things are quiet (no new state for a few seconds).
    wait_for(
        lambda: settled_state(run_id, quiet_s=3.0) == StateType.CRASHED, timeout_s=90, what="crash"
    )

    # The crash hook mirrored it: the student sees the failure and the step it happened in. The
    # worker runs the hook after it has reported the state, so the mirror may lag the state.
    def mirrored() -> bool:
        pipeline.session.expire_all()
        row = pipeline.session.get(Provision, provision_id)
        return row is not None and row.status == "failed"

    wait_for(mirrored, timeout_s=60, what="the crash hook's mirror")
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    assert row.status_reason and row.status_reason.startswith("buy_domains")

    # What the Prefect UI's Retry button does.
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Scheduled(name="AwaitingRetry"), force=True)
    (state,) = drive([run_id])

    assert state.is_completed(), state.message
    assert_paid_once_and_active(pipeline, provision_id)


@pytest.mark.usefixtures("worker")
def test_two_runs_for_one_provision_buy_once(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision()
    first = start(provision_id, key="duplicate-a")
    second = start(provision_id, key="duplicate-b")

    states = drive([first, second])

    assert all(s.is_completed() for s in states), [s.message for s in states]
    results = [s.result() for s in states]
    # Exactly one run did the work; the other saw a live run and stepped aside.
    assert sorted(r["status"] for r in results) == ["active", "duplicate"]
    assert_paid_once_and_active(pipeline, provision_id)


def test_settings_reach_the_worker(pipeline: Pipeline) -> None:
    from tests.support.worker import app_env

    env = app_env(pipeline.settings)
    rebuilt = Settings(
        _env_file=None, **{k.removeprefix("APP_").lower(): v for k, v in env.items()}
    )
    assert rebuilt.database_url == pipeline.settings.database_url
    assert rebuilt.zapmail_base_url == pipeline.settings.zapmail_base_url
