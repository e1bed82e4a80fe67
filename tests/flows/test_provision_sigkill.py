"""The flow-run process is SIGKILLed in the middle of every step: one retry finishes, nothing twice.

A real process worker runs the provision. While one step's vendor call is held open by the
sandbox, the run's own process (never the worker) is killed with SIGKILL at one of two moments:
before the vendor acted (the call is held unanswered: a ``timeout`` fault) or after it acted but
before its answer arrived (a ``drop_response`` fault). The worker reports the run crashed and
its hook marks the provision failed at that step; an operator presses Retry (the Prefect UI's
button, or the admin page, which does the same) and the run must reach active with each domain
charged once, each mailbox created once and every other vendor resource created once. The
student's status, sampled all along, shows the dead run failed at that step within seconds
(until then, the step still in progress), and never active before the retried run finishes.
`make test` runs one cell; `make chaos` every step at both moments.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry
from sqlalchemy import create_engine
from sqlalchemy import select

from core.models import Provision
from core.models import ProvisioningStep
from flows.sweep_waiting import sweep_waiting
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_db_drop import CELLS as DB_DROP_CELLS
from tests.flows.test_provision_faults import assert_paid_once_and_active
from tests.flows.test_provision_faults import log_outcome
from tests.flows.test_provision_faults import with_website
from tests.flows.test_provision_worker import drive
from tests.flows.test_provision_worker import settled_state
from tests.flows.test_provision_worker import start
from tests.support.pollers import BackgroundPoller
from tests.support.worker import flow_run_processes
from tests.support.worker import read_run
from tests.support.worker import running_worker
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect
log = logging.getLogger(__name__)

# The kill moment -> the sandbox fault that holds the step's call open until the caller dies.
MOMENTS = {"before_vendor": "timeout", "after_vendor": "drop_response"}
# Longer than any cell needs: the hold ends when the killed process's socket closes.
HOLD_S = 120.0
# Forwarding runs only for a student who gave a website (the cell gives one).
FORWARDING = ("forwarding", "zapmail", "POST", "/v2/domains/forwarding")
CELLS = (*DB_DROP_CELLS, FORWARDING)
# The purchase after the charge is test_provision_worker's cell; this slice adds a mailbox one.
# `make chaos` runs every cell, forwarding's included.
SLICE = {("mailboxes", "after_vendor")}
SELECTED = [
    (cell, moment)
    for cell in CELLS
    for moment in MOMENTS
    if os.environ.get("RELIABILITY_LONG") or (cell[0], moment) in SLICE
]
# How long the student may still see the dead run's step "in progress" before it shows failed.
NOTICE_S = 30.0
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


@pytest.fixture
def worker(pipeline: Pipeline, prefect_api: str, tmp_path: Path) -> Iterator[Any]:
    """A process worker running prefect.yaml's deployments with this test's settings."""
    # The held call must outlast the test's reaction time, not end in a client timeout and retry.
    pipeline.settings.vendor_timeout_s = 30.0
    home = tmp_path / "worker-home"
    home.mkdir()
    with running_worker(prefect_api, pipeline.settings, home, tmp_path / "worker-results") as proc:
        yield proc


def run_process(worker_pid: int, run_id: UUID) -> int | None:
    """The pid of the worker's child that runs ``run_id`` (not a sweep the schedule started)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for pid in flow_run_processes(worker_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if marker in environ:
            return pid
    return None


def fault_hits(pipeline: Pipeline, fault_id: int) -> int:
    faults = pipeline.sandbox.control("GET", "/faults").json()["faults"]
    return next(f["hits"] for f in faults if f["id"] == fault_id)


def until_in_flight(pipeline: Pipeline, run_id: UUID, fault_id: int) -> None:
    """Drive the run (resuming its waits, as the sweeper would) until the held call arrives."""
    deadline = time.monotonic() + 240
    while not fault_hits(pipeline, fault_id):
        state = read_run(run_id).state
        assert state is not None and not state.is_final(), f"run ended first: {state}"
        if state.is_paused():
            sweep_waiting()
        assert time.monotonic() < deadline, "the step's vendor call never came"
        time.sleep(0.2)


def vendor_state(pipeline: Pipeline) -> dict[str, Any]:
    """What each vendor holds, from the sandbox's control plane."""
    get = pipeline.sandbox.control
    return {
        "zapmail": get("GET", "/zapmail/state").json(),
        "plusvibe": get("GET", "/plusvibe/state").json(),
        "heyreach": get("GET", "/heyreach/state").json(),
        "ledger": Counter(e["kind"] for e in pipeline.sandbox.ledger()),
    }


def student_email(pipeline: Pipeline, provision_id: int) -> str:
    pipeline.session.expire_all()
    return pipeline.session.get(Provision, provision_id).user.email  # type: ignore[union-attr]


# Whether the cell's vendor operation took effect, read from the vendor's own state.
ACTED: dict[str, Callable[[dict[str, Any], int, str], bool]] = {
    "zapmail_workspace": lambda s, pid, _e: any(
        w["name"] == f"outbound-provision-{pid}" for w in s["zapmail"]["workspaces"]
    ),
    "buy_domains": lambda s, _p, _e: s["ledger"]["domain_purchase"] > 0,
    "dmarc": lambda s, _p, _e: any(d["dmarcEmail"] for d in s["zapmail"]["domains"]),
    "mailboxes": lambda s, _p, _e: s["ledger"]["mailbox_created"] > 0,
    "plusvibe_workspace": lambda s, _p, email: any(
        c["email"].lower() == email for c in s["plusvibe"]["clients"]
    ),
    "connect_plusvibe": lambda s, _p, _e: bool(s["zapmail"]["exports"]),
    "warmup": lambda s, _p, _e: any(
        a["warmup_status"] == "ACTIVE" for a in s["plusvibe"]["accounts"]
    ),
    "heyreach_list": lambda s, _p, _e: bool(s["heyreach"]["lists"]),
    "forwarding": lambda s, _p, _e: s["ledger"]["domain_forwarding_set"] > 0,
}


def vendor_acted(pipeline: Pipeline, step: str, provision_id: int) -> bool:
    email = student_email(pipeline, provision_id)
    return ACTED[step](vendor_state(pipeline), provision_id, email)


def assert_created_once(pipeline: Pipeline, provision_id: int) -> None:
    """Every vendor resource of the provision exists once (the ledger covers money and mailboxes)."""
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    email = row.user.email
    addresses = sorted(m.address for d in row.domains for m in d.mailboxes)
    state = vendor_state(pipeline)
    zapmail, plusvibe = state["zapmail"], state["plusvibe"]
    counts = {
        "zapmail workspace": sum(
            w["name"] == f"outbound-provision-{provision_id}" for w in zapmail["workspaces"]
        ),
        "zapmail PlusVibe login": sum(
            a["email"].lower() == email for a in zapmail["thirdPartyAccounts"]
        ),
        "plusvibe workspace": sum(
            w["name"].startswith(f"Outbound #{provision_id} ") for w in plusvibe["workspaces"]
        ),
        "plusvibe client": sum(c["email"].lower() == email for c in plusvibe["clients"]),
        "heyreach list": sum(
            r["name"].startswith(f"Outbound #{provision_id} ") for r in state["heyreach"]["lists"]
        ),
    }
    assert counts == dict.fromkeys(counts, 1), f"vendor resources not created once: {counts}"
    boxes = Counter(m["email"].lower() for m in zapmail["mailboxes"])
    accounts = Counter(a["email"].lower() for a in plusvibe["accounts"])
    assert all(boxes[a] == 1 for a in addresses), f"zapmail mailboxes: {boxes}"
    assert all(accounts[a] == 1 for a in addresses), f"plusvibe accounts: {accounts}"


@dataclass
class Sample:
    """What the portal could show the student at one moment."""

    at: float
    status: str
    reason: str | None
    steps: dict[str, str]


class StatusWatch(BackgroundPoller):
    """Samples the provision's status and step rows (all the portal reads) every 0.1 s."""

    def __init__(self, db_url: str, provision_id: int) -> None:
        super().__init__(create_engine(db_url, isolation_level="AUTOCOMMIT"))
        self.provision_id = provision_id
        self.samples: list[Sample] = []

    def poll(self) -> bool:
        """Record one sample."""
        with self.engine.connect() as conn:
            status, reason = conn.execute(
                select(Provision.status, Provision.status_reason).where(
                    Provision.id == self.provision_id
                )
            ).one()
            steps = conn.execute(
                select(ProvisioningStep.step_key, ProvisioningStep.status).where(
                    ProvisioningStep.provision_id == self.provision_id
                )
            ).all()
        self.samples.append(Sample(time.monotonic(), status, reason, dict(steps)))
        return False

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at < end]


def assert_truthful(watch: StatusWatch, step: str, killed_at: float, retried_at: float) -> float:
    """Check what the student saw around the kill; return how long the dead run looked alive."""
    before = watch.between(0.0, killed_at)
    assert before and all(s.status == "provisioning" for s in before), {s.status for s in before}
    dead = watch.between(killed_at, retried_at)
    shown = next((i for i, s in enumerate(dead) if s.status == "failed"), None)
    assert shown is not None, "the crash was never shown to the student"
    lag = dead[shown].at - killed_at
    assert lag < NOTICE_S, f"the dead run looked alive for {lag:.1f}s"
    # Until the crash is known the last true thing is shown: the step in progress, nothing more.
    # (The hook fails the step first, then the provision: a sample may fall in between.)
    for s in dead[:shown]:
        assert s.status == "provisioning" and s.steps.get(step) in ("running", "failed"), s
    # Once shown, it stays failed at this step until the operator retries.
    for s in dead[shown:]:
        assert s.status == "failed" and (s.reason or "").startswith(step), s
        assert s.steps.get(step) == "failed", s
    return lag


def mirrored_failed(db_url: str, provision_id: int) -> bool:
    """Whether the crash hook has shown the provision failed (what the admin retries from)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            status = conn.scalar(select(Provision.status).where(Provision.id == provision_id))
    finally:
        engine.dispose()
    return status == "failed"


def kill_run_process(pipeline: Pipeline, worker_pid: int, run_id: UUID, fault_id: int) -> float:
    """SIGKILL the process running ``run_id`` inside its held vendor call; return when."""
    pid = wait_for(lambda: run_process(worker_pid, run_id), timeout_s=10, what="the run's process")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # Killed inside the held call: the first one, still in flight.
    assert fault_hits(pipeline, fault_id) == 1
    return killed_at


def retry_like_an_operator(run_id: UUID) -> None:
    """What the Prefect UI's Retry and the admin page do: the same run, back to AwaitingRetry."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            run_id, AwaitingRetry(message="Retried by the operator"), force=True
        )


@pytest.mark.parametrize(("cell", "moment"), SELECTED, ids=[f"{c[0]}-{m}" for c, m in SELECTED])
def test_run_process_killed_mid_step_recovers_after_one_retry(
    pipeline: Pipeline,
    worker: Any,
    db_url: str,
    cell: tuple[str, str, str, str],
    moment: str,
) -> None:
    step, vendor, method, path = cell
    email = f"kill-{step.replace('_', '')}-{moment.split('_')[0]}@student.test"
    provision_id = pipeline.paid_provision(email=email)
    if step == "forwarding":
        with_website(pipeline, provision_id)
    fault = pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind=MOMENTS[moment], hold_s=HOLD_S, times=1
    )

    with StatusWatch(db_url, provision_id) as watch:
        run_id = start(provision_id)
        until_in_flight(pipeline, run_id, fault["id"])
        if moment == "after_vendor":
            wait_for(
                lambda: vendor_acted(pipeline, step, provision_id),
                timeout_s=10,
                what=f"{step} to take effect at the vendor",
            )
        killed_at = kill_run_process(pipeline, worker.pid, run_id, fault["id"])
        pipeline.session.expire_all()
        in_flight = pipeline.session.scalar(
            select(ProvisioningStep.status).where(
                ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == step
            )
        )
        assert in_flight == "running", f"{step} was {in_flight} when the process died"

        # The worker sees its child die and reports the run crashed; its crash hook mirrors it.
        # Both reporters must be done before the operator retries: the worker's state and the
        # crash hook's mirror (on a loaded machine the later one can land after a retry and
        # overwrite it, which no operator would see: they retry what the page shows failed).
        final = wait_for(
            lambda: (
                (t := settled_state(run_id, quiet_s=3.0)) in FINAL
                and (t == StateType.COMPLETED or mirrored_failed(db_url, provision_id))
                and t
            ),
            timeout_s=120,
            what="the crash to be reported and mirrored",
        )
        retried_at = time.monotonic()
        outcome = "automatically" if final == StateType.COMPLETED else "after one retry"
        if outcome != "automatically":
            assert final == StateType.CRASHED, final
            # Killed before the vendor acted, the held call never reached it (nor will it).
            assert vendor_acted(pipeline, step, provision_id) == (moment == "after_vendor")
            retry_like_an_operator(run_id)
        (state,) = drive([run_id])
    try:
        assert state.is_completed(), state.message
        assert_paid_once_and_active(pipeline, provision_id)
        assert_created_once(pipeline, provision_id)
    except AssertionError:
        log_outcome("lost")
        raise
    log_outcome(outcome)

    lag = assert_truthful(watch, step, killed_at, retried_at)
    assert all(s.status != "active" for s in watch.between(0.0, retried_at))
    log.info("%s/%s: %s; the dead run showed as failed after %.1fs", step, moment, outcome, lag)
