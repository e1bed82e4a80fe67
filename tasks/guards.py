"""Fencing for mutating tasks: a cancelled order, or a run that lost its claim, changes nothing.

Each run claim bumps the provision's ``run_epoch`` (tasks/pipeline.py) and remembers the epoch it
got in this process. Every task that changes something at a vendor calls :func:`ensure_current`
first (under the provision's lock where it spends): a zombie of an older claim, or any run of a
cancelled order, stops there with nothing spent and nothing re-enabled. An upgrade run claims
its provision the same way and also bumps ``Upgrade.run_epoch``: :func:`ensure_upgrade_current`
fences an older run of the same upgrade, and a cancelled upgrade, out of that upgrade's rows.
A domain replacement's run does the same with ``DomainReplacement.run_epoch``
(:func:`ensure_replacement_current`).
"""

from __future__ import annotations

import threading
from typing import Any

from prefect.runtime import flow_run
from sqlalchemy import select

from core.models import DomainReplacement
from core.models import Provision
from core.models import ProvisionStatus
from core.models import ReplacementStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from tasks import runtime
from tasks.errors import PipelineError

_lock = threading.Lock()
# (flow run, provision id) -> the epoch that run claimed (tasks of a run share its process). Keyed
# by the run too: a process that ran one run and then another (tests, a reused worker) must not
# fence the second with the first's finished claim.
_claimed: dict[tuple[str | None, int], int] = {}
# (flow run, upgrade id) -> the upgrade epoch that run claimed.
_upgrade_claimed: dict[tuple[str | None, int], int] = {}
# (flow run, replacement id) -> the replacement epoch that run claimed.
_replacement_claimed: dict[tuple[str | None, int], int] = {}


def _run() -> str | None:
    """The current flow run's id, or None outside a run (a task called directly)."""
    run_id = flow_run.id
    return str(run_id) if run_id else None


class StaleRunError(PipelineError):
    """This run may no longer change the provision (cancelled, or another run claimed it)."""

    retryable = False
    student_message = "Nothing more was changed for this order."


def remember_claim(provision_id: int, epoch: int) -> None:
    """Record the epoch this process's run claimed for the provision."""
    with _lock:
        _claimed[(_run(), provision_id)] = epoch


def claimed_epoch(provision_id: int) -> int | None:
    """The epoch this process claimed for the provision, if any."""
    with _lock:
        return _claimed.get((_run(), provision_id))


def remember_upgrade_claim(upgrade_id: int, epoch: int, provision_id: int | None = None) -> None:
    """Record the upgrade epoch this process's run claimed (fencing moves to the upgrade)."""
    with _lock:
        _upgrade_claimed[(_run(), upgrade_id)] = epoch
        if provision_id is not None:
            # A provisioning run that ended earlier in this process left its claim here; the
            # upgrade is fenced by its own epoch, not by that finished run's (found by the
            # upgrade SIGKILL cells, where one test process runs both).
            _claimed.pop((_run(), provision_id), None)


def claimed_upgrade_epoch(upgrade_id: int) -> int | None:
    """The upgrade epoch this process claimed, if any."""
    with _lock:
        return _upgrade_claimed.get((_run(), upgrade_id))


def remember_replacement_claim(replacement_id: int, epoch: int, provision_id: int) -> None:
    """Record the replacement epoch this process's run claimed (fenced like an upgrade)."""
    with _lock:
        _replacement_claimed[(_run(), replacement_id)] = epoch
        _claimed.pop((_run(), provision_id), None)


def claimed_replacement_epoch(replacement_id: int) -> int | None:
    """The replacement epoch this process claimed, if any."""
    with _lock:
        return _replacement_claimed.get((_run(), replacement_id))


def ensure_replacement_current(replacement_id: int) -> int:
    """Raise StaleRunError if the replacement (or its provision) is cancelled or our claim is old.

    Returns the replacement's provision id.
    """
    with runtime.db() as session:
        row = session.execute(
            select(
                DomainReplacement.status,
                DomainReplacement.run_epoch,
                DomainReplacement.provision_id,
            ).where(DomainReplacement.id == replacement_id)
        ).one_or_none()
    if row is None:
        raise StaleRunError(f"replacement {replacement_id} does not exist")
    status, epoch, provision_id = row
    if status == ReplacementStatus.CANCELLED:
        raise StaleRunError(f"replacement {replacement_id} is cancelled; nothing is changed")
    mine = claimed_replacement_epoch(replacement_id)
    if mine is not None and mine != epoch:
        raise StaleRunError(
            f"replacement {replacement_id} was claimed by a newer run (epoch {epoch}, ours {mine})"
        )
    ensure_current(provision_id)
    return int(provision_id)


def claim_is_current(provision_id: int) -> list[Any]:
    """WHERE clauses for "this process's claim is still the provision's current one" (if it holds one)."""
    mine = claimed_epoch(provision_id)
    return [] if mine is None else [Provision.run_epoch == mine]


def ensure_upgrade_current(upgrade_id: int) -> int:
    """Raise StaleRunError if the upgrade (or its provision) is cancelled or our claim is outdated.

    Returns the upgrade's provision id; the provision's own fence is checked too.
    """
    with runtime.db() as session:
        row = session.execute(
            select(Upgrade.status, Upgrade.run_epoch, Upgrade.provision_id).where(
                Upgrade.id == upgrade_id
            )
        ).one_or_none()
    if row is None:
        raise StaleRunError(f"upgrade {upgrade_id} does not exist")
    status, epoch, provision_id = row
    if status == UpgradeStatus.CANCELLED:
        raise StaleRunError(f"upgrade {upgrade_id} is cancelled; nothing is changed")
    mine = claimed_upgrade_epoch(upgrade_id)
    if mine is not None and mine != epoch:
        raise StaleRunError(
            f"upgrade {upgrade_id} was claimed by a newer run (epoch {epoch}, ours {mine})"
        )
    ensure_current(provision_id)
    return int(provision_id)


def ensure_current(provision_id: int) -> None:
    """Raise StaleRunError if the provision is cancelled or this process's claim is outdated."""
    with runtime.db() as session:
        row = session.execute(
            select(Provision.status, Provision.run_epoch).where(Provision.id == provision_id)
        ).one_or_none()
    if row is None:
        raise StaleRunError(f"provision {provision_id} does not exist")
    status, epoch = row
    if status == ProvisionStatus.CANCELLED:
        raise StaleRunError(f"provision {provision_id} is cancelled; nothing is changed")
    mine = claimed_epoch(provision_id)
    if mine is not None and mine != epoch:
        raise StaleRunError(
            f"provision {provision_id} was claimed by a newer run (epoch {epoch}, ours {mine})"
        )
