"""Run claims: one live run per provision, fenced by an epoch every claim bumps."""

from __future__ import annotations

from uuid import UUID

from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from core.models import Provision
from tasks import guards
from tasks import runtime

# A lost compare-and-set on the claim means the holder changed; re-judge the new one this often.
CLAIM_ATTEMPTS = 5


class NotStartableError(Exception):
    """The provision is not in a state that may be provisioned (unpaid, cancelled)."""


def claim_provision(provision_id: int) -> str | None:
    """Make this run the provision's only live run; return the live run's id if another holds it.

    A compare-and-set on ``current_flow_run_id``: the claim succeeds when the field is empty,
    already names this run (a retry, or the outbox sender recording this very run's id between
    our read and our write), or names a run that has finished. Each won claim bumps
    ``run_epoch`` in the same UPDATE and is remembered in this process (tasks/guards.py), so
    every older run of the provision is fenced out of its mutating tasks.
    """
    me = str(flow_run.id) if flow_run.id else None
    # Bounded: each lost compare-and-set means the holder changed; re-judge the new one.
    for _ in range(CLAIM_ATTEMPTS):
        with runtime.db() as session:
            holder = session.scalar(
                select(Provision.current_flow_run_id).where(Provision.id == provision_id)
            )
        if holder and holder != me and not run_is_final(holder):
            return holder
        epoch = _take_claim(provision_id, holder, me)
        if epoch is not None:
            guards.remember_claim(provision_id, epoch)
            return None
    with runtime.db() as session:
        return session.scalar(
            select(Provision.current_flow_run_id).where(Provision.id == provision_id)
        )


def _take_claim(provision_id: int, holder: str | None, me: str | None) -> int | None:
    """Compare-and-set the holder to ``me`` and bump the epoch; the new epoch, or None if lost."""
    seen = (
        Provision.current_flow_run_id.is_(None)
        if holder is None
        else Provision.current_flow_run_id == holder
    )
    # "The holder is me" is success too, whoever wrote it.
    mine = seen if me is None else or_(seen, Provision.current_flow_run_id == me)
    with runtime.db() as session:
        won = session.execute(
            update(Provision)
            .where(Provision.id == provision_id, mine)
            .values(current_flow_run_id=me, run_epoch=Provision.run_epoch + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
        # Same transaction: the row is ours until the commit, so this is the epoch we set.
        return int(
            session.scalar(select(Provision.run_epoch).where(Provision.id == provision_id)) or 0
        )


def run_is_final(flow_run_id: str) -> bool:
    """Whether a flow run has ended (or is unknown to this server), so it holds nothing."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except (ObjectNotFound, ValueError):
        return True  # unknown to this server: nothing live can be holding the provision
    return state is None or state.is_final()
