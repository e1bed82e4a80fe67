"""Cancelling an order in the app DB: the one way a provision becomes ``cancelled``.

``cancelled`` is terminal (a DB trigger refuses any move out of it). Each request also bumps the
provision's cancellation generation and queues the release of its vendor resources under a key
of that generation, so asking again after a failed release starts a new run instead of getting
the failed one back. The caller commits; the outbox sender starts the run after the commit.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus

CANCEL_DEPLOYMENT = "cancel-provision/on-demand"


def cancel_key(provision_id: int, generation: int) -> str:
    """Idempotency key of one cancellation request's run."""
    return f"cancel:{provision_id}:{generation}"


def request_cancellation(session: Session, provision_id: int, *, reason: str) -> bool:
    """Mark the provision cancelled (compare-and-set) and queue the release; False if it already was."""
    won = session.execute(
        update(Provision)
        .where(Provision.id == provision_id, Provision.status != ProvisionStatus.CANCELLED.value)
        .values(
            status=ProvisionStatus.CANCELLED.value,
            cancelled_at=utcnow(),
            status_reason=reason,
            waiting_for=None,
            waiting_since=None,
            cancel_generation=Provision.cancel_generation + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return False
    _queue_release(session, provision_id)
    return True


def release_again(session: Session, provision_id: int) -> bool:
    """Queue a fresh release run for an already cancelled provision (after a failed one)."""
    bumped = session.execute(
        update(Provision)
        .where(Provision.id == provision_id, Provision.status == ProvisionStatus.CANCELLED.value)
        .values(cancel_generation=Provision.cancel_generation + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if bumped != 1:
        return False
    _queue_release(session, provision_id)
    return True


def _queue_release(session: Session, provision_id: int) -> None:
    generation = session.scalar(
        Provision.__table__.select()
        .with_only_columns(Provision.cancel_generation)
        .where(Provision.id == provision_id)
    )
    outbox.enqueue(
        session,
        key=cancel_key(provision_id, int(generation or 0)),
        deployment=CANCEL_DEPLOYMENT,
        parameters={"provision_id": provision_id},
    )
