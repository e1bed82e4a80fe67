"""Fencing for mutating tasks: a cancelled order, or a run that lost its claim, changes nothing.

Each run claim bumps the provision's ``run_epoch`` (tasks/pipeline.py) and remembers the epoch it
got in this process. Every task that changes something at a vendor calls :func:`ensure_current`
first (under the provision's lock where it spends): a zombie of an older claim, or any run of a
cancelled order, stops there with nothing spent and nothing re-enabled.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from core.models import Provision
from core.models import ProvisionStatus
from tasks import runtime
from tasks.errors import PipelineError

_lock = threading.Lock()
# provision id -> the epoch this process's run claimed (tasks of a run share its process).
_claimed: dict[int, int] = {}


class StaleRunError(PipelineError):
    """This run may no longer change the provision (cancelled, or another run claimed it)."""

    retryable = False
    student_message = "Nothing more was changed for this order."


def remember_claim(provision_id: int, epoch: int) -> None:
    """Record the epoch this process's run claimed for the provision."""
    with _lock:
        _claimed[provision_id] = epoch


def claimed_epoch(provision_id: int) -> int | None:
    """The epoch this process claimed for the provision, if any."""
    with _lock:
        return _claimed.get(provision_id)


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
