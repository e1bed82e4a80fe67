"""Reconcile the app DB's mirror with Prefect: runs that died where no hook could report it.

Provisioning, upgrade and domain-replacement runs alike.

A worker killed mid-run, a run cancelled in the Prefect UI before its process started, or a
server-side zombie detection leave the app saying "provisioning" forever, because flow hooks
only run inside a live flow process. This reads every run the app believes is live in one
batched API call and applies the same failure mirroring as the flows' own hooks.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client
from prefect import task
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.filters import FlowRunFilterId
from prefect.client.schemas.objects import State
from prefect.client.schemas.objects import StateType
from prefect.logging import get_run_logger
from sqlalchemy import select

from core.models import DomainReplacement
from core.models import Provision
from core.models import ProvisionStatus
from core.models import ReplacementStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from tasks import runtime
from tasks.pipeline import mark_provision_failed
from tasks.policies import vendor_task_options
from tasks.replacement import mark_replacement_failed
from tasks.upgrade import mark_upgrade_failed

# Final and unsuccessful. Paused/Suspended runs wait for a resume, Scheduled ones (AwaitingRetry,
# Late) for a worker, Cancelling ones for their process: all of those are still alive.
DEAD = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
# The server's page size for flow-run queries (PREFECT_API_DEFAULT_LIMIT).
PAGE = 200


@task(name="reconcile-runs", **vendor_task_options(None))
def reconcile_runs() -> dict[str, list[int]]:
    """Mark provisions, upgrades and replacements failed whose run died without telling the app."""
    with runtime.db() as session:
        provisions = session.execute(
            select(Provision.id, Provision.current_flow_run_id).where(
                Provision.status == ProvisionStatus.PROVISIONING.value,
                Provision.current_flow_run_id.is_not(None),
            )
        ).all()
        upgrades = session.execute(
            select(Upgrade.id, Upgrade.flow_run_id).where(
                Upgrade.status == UpgradeStatus.PROVISIONING.value,
                Upgrade.flow_run_id.is_not(None),
            )
        ).all()
        replacements = session.execute(
            select(DomainReplacement.id, DomainReplacement.flow_run_id).where(
                DomainReplacement.status == ReplacementStatus.PROVISIONING.value,
                DomainReplacement.flow_run_id.is_not(None),
            )
        ).all()
    runs = [run for rows in (provisions, upgrades, replacements) for _id, run in rows]
    states = read_states(runs)
    logger = get_run_logger()
    failed: dict[str, list[int]] = {"provisions": [], "upgrades": [], "replacements": []}
    for provision_id, run_id in provisions:
        if death_of(run_id, states) and _provision_still_on(provision_id, run_id):
            reason = _confirmed_death(run_id)
            if reason:
                logger.warning("provision %s: %s", provision_id, reason)
                mark_provision_failed(provision_id, None, reason, flow_run_id=run_id)
                failed["provisions"].append(provision_id)
    for upgrade_id, run_id in upgrades:
        if death_of(run_id, states) and _upgrade_still_on(upgrade_id, run_id):
            reason = _confirmed_death(run_id)
            if reason:
                logger.warning("upgrade %s: %s", upgrade_id, reason)
                mark_upgrade_failed(upgrade_id, None, reason, run_id)
                failed["upgrades"].append(upgrade_id)
    for replacement_id, run_id in replacements:
        if death_of(run_id, states) and _replacement_still_on(replacement_id, run_id):
            reason = _confirmed_death(run_id)
            if reason:
                logger.warning("replacement %s: %s", replacement_id, reason)
                mark_replacement_failed(replacement_id, None, reason, run_id)
                failed["replacements"].append(replacement_id)
    return failed


def read_states(run_ids: list[str]) -> dict[str, State[Any] | None]:
    """The current state of each run, one API call per 200 runs; unknown runs are absent."""
    ids = sorted({UUID(run) for run in run_ids if _is_uuid(run)})
    found: dict[str, State[Any] | None] = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(ids), PAGE):
            page = ids[start : start + PAGE]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=len(page)
            )
            found.update({str(run.id): run.state for run in runs})
    return found


def death_of(run_id: str, states: dict[str, State[Any] | None]) -> str | None:
    """Why the run is dead (for the step's technical detail), or None while it may still finish."""
    if run_id not in states:
        return f"run {run_id} does not exist in Prefect"
    state = states[run_id]
    if state is None or state.type not in DEAD:
        return None
    return f"run {run_id} {state.type.value.lower()}: {state.message or state.name}"


def _provision_still_on(provision_id: int, run_id: str) -> bool:
    with runtime.db() as session:
        row = session.execute(
            select(Provision.status, Provision.current_flow_run_id).where(
                Provision.id == provision_id
            )
        ).one_or_none()
    return row is not None and tuple(row) == (ProvisionStatus.PROVISIONING.value, run_id)


def _upgrade_still_on(upgrade_id: int, run_id: str) -> bool:
    with runtime.db() as session:
        row = session.execute(
            select(Upgrade.status, Upgrade.flow_run_id).where(Upgrade.id == upgrade_id)
        ).one_or_none()
    return row is not None and tuple(row) == (UpgradeStatus.PROVISIONING.value, run_id)


def _replacement_still_on(replacement_id: int, run_id: str) -> bool:
    with runtime.db() as session:
        row = session.execute(
            select(DomainReplacement.status, DomainReplacement.flow_run_id).where(
                DomainReplacement.id == replacement_id
            )
        ).one_or_none()
    return row is not None and tuple(row) == (ReplacementStatus.PROVISIONING.value, run_id)


def _confirmed_death(run_id: str) -> str | None:
    # Read the run again after the app DB: a retry from the Prefect UI or the admin page since
    # the batched read makes the same run live again (rare, so one call per dead run is cheap).
    return death_of(run_id, read_states([run_id]))


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True
