"""The outbox: side effects decided inside a transaction, performed only after it commits.

A webhook or a page that decides "start this run" or "refund that order" writes an outbox row in
the same transaction as the state change; a sender (the portal right after the commit, and the
watchdog deployment for anything left behind) performs it later. The row's key is also the
effect's idempotency key (``run_deployment(idempotency_key=key)``), so a row sent twice, by two
senders or after a crash between sending and recording, still has one effect. Nothing here
talks to Prefect: the sender passes in the function that performs a message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import OutboxMessage

# Every effect is a deployment run today (provisioning, upgrades, cancellations, refunds).
START_DEPLOYMENT = "start_deployment"


def enqueue(
    session: Session, *, key: str, deployment: str, parameters: dict[str, Any]
) -> OutboxMessage:
    """Add "start ``deployment`` with ``parameters``" under ``key``; the same key is added once."""
    existing = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
    if existing is not None:
        return existing
    message = OutboxMessage(
        key=key,
        kind=START_DEPLOYMENT,
        payload={"deployment": deployment, "parameters": parameters},
        next_attempt_at=utcnow(),
    )
    session.add(message)
    session.flush()
    return message
