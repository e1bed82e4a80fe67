"""The outbox: side effects decided inside a transaction, performed only after it commits.

A webhook or a page that decides "start this run" or "refund that order" writes an outbox row in
the same transaction as the state change; a sender (the portal right after the commit, and the
watchdog deployment for anything left behind) performs it later. The row's key is also the
effect's idempotency key (``run_deployment(idempotency_key=key)``), so a row sent twice, by two
senders or after a crash between sending and recording, still has one effect. Nothing here
talks to Prefect: the sender passes in the function that performs a message.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import OutboxMessage
from core.models import Provision
from core.models import Upgrade

ENQUEUED = "outbox_enqueued_keys"
# Every effect is a deployment run today (provisioning, upgrades, cancellations, refunds).
START_DEPLOYMENT = "start_deployment"
PROVISION_DEPLOYMENT = "provision/on-demand"
UPGRADE_DEPLOYMENT = "upgrade/on-demand"
SENDER_PROFILE_DEPLOYMENT = "sender-profile/on-demand"


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
    # The portal hands the keys a request enqueued to its sender once the request commits.
    session.info.setdefault(ENQUEUED, []).append(key)
    return message


def take_enqueued(session: Session) -> list[str]:
    """The keys this session enqueued since the last call (the sender sends them after commit)."""
    return list(session.info.pop(ENQUEUED, []))


# A claim older than this belongs to a sender that died mid-send; another sender may take it
# over (the idempotency key makes the second send return the first one's effect).
CLAIM_TIMEOUT = timedelta(seconds=60)
# After a failed send: wait RETRY_BASE * 2**(attempts-1), at most RETRY_CAP.
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=10)
MAX_ERROR = 2000


@dataclass(frozen=True)
class Message:
    """One claimed outbox row: what to perform and under which idempotency key."""

    id: int
    key: str
    kind: str
    deployment: str
    parameters: dict[str, Any]
    token: str


Perform = Callable[[Message], str]
SessionScope = Callable[[], AbstractContextManager[Session]]


def _claimable(now: datetime) -> Any:
    return and_(
        OutboxMessage.sent_at.is_(None),
        OutboxMessage.next_attempt_at <= now,
        or_(
            OutboxMessage.claim_token.is_(None),
            OutboxMessage.claimed_at < now - CLAIM_TIMEOUT,
        ),
    )


def due_ids(
    session: Session,
    *,
    keys: list[str] | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
) -> list[int]:
    """Ids of unsent rows a sender may claim now (optionally only ``keys``, or older ones)."""
    now = utcnow()
    query = select(OutboxMessage.id).where(_claimable(now))
    if keys is not None:
        query = query.where(OutboxMessage.key.in_(keys))
    if created_before is not None:
        query = query.where(OutboxMessage.created_at <= created_before)
    return list(session.scalars(query.order_by(OutboxMessage.id).limit(limit)))


def claim(session: Session, message_id: int) -> Message | None:
    """Claim one row with a compare-and-set; None when it is sent, not due or claimed by a live sender."""
    now = utcnow()
    token = uuid4().hex
    won = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, _claimable(now))
        .values(claim_token=token, claimed_at=now, attempts=OutboxMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return None
    row = session.execute(
        select(OutboxMessage.key, OutboxMessage.kind, OutboxMessage.payload).where(
            OutboxMessage.id == message_id
        )
    ).one()
    payload = dict(row.payload or {})
    return Message(
        id=message_id,
        key=row.key,
        kind=row.kind,
        deployment=str(payload.get("deployment", "")),
        parameters=dict(payload.get("parameters") or {}),
        token=token,
    )


def mark_sent(session: Session, message: Message, result: str) -> bool:
    """Record the effect's id; False if the claim was lost meanwhile (a sender took it over)."""
    won = (
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id, OutboxMessage.claim_token == message.token)
            .values(sent_at=utcnow(), result=str(result)[:255], last_error=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    _point_at_run(session, message, str(result))
    return won


def _point_at_run(session: Session, message: Message, run_id: str) -> None:
    # Only an empty pointer is filled (a compare-and-set): the run claims the provision itself
    # when it starts (tasks/pipeline.py), and a newer run's claim is never overwritten here.
    # The pointer lets the admin page and the watchdog see a run that has not started yet.
    if message.deployment == PROVISION_DEPLOYMENT and "provision_id" in message.parameters:
        session.execute(
            update(Provision)
            .where(
                Provision.id == message.parameters["provision_id"],
                Provision.current_flow_run_id.is_(None),
            )
            .values(current_flow_run_id=run_id)
            .execution_options(synchronize_session=False)
        )
    elif message.deployment == UPGRADE_DEPLOYMENT and "upgrade_id" in message.parameters:
        session.execute(
            update(Upgrade)
            .where(Upgrade.id == message.parameters["upgrade_id"], Upgrade.flow_run_id.is_(None))
            .values(flow_run_id=run_id)
            .execution_options(synchronize_session=False)
        )


def mark_failed(session: Session, message: Message, error: str) -> bool:
    """Release the claim with the error and a backoff before the next attempt."""
    attempts = session.scalar(select(OutboxMessage.attempts).where(OutboxMessage.id == message.id))
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(0, int(attempts or 1) - 1))
    return (
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id, OutboxMessage.claim_token == message.token)
            .values(
                claim_token=None,
                claimed_at=None,
                last_error=error[:MAX_ERROR],
                next_attempt_at=utcnow() + delay,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


def send_one(scope: SessionScope, message_id: int, perform: Perform) -> str | None:
    """Claim, perform and record one row (each in its own transaction); return the result or None.

    Nothing is held open while ``perform`` runs. A crash between performing and recording leaves
    the claim to expire; the next sender performs it again under the same key, which returns the
    same effect.
    """
    with scope() as session:
        message = claim(session, message_id)
    if message is None:
        return None
    try:
        result = perform(message)
    except Exception as exc:  # any failure: record it and back off; a later sender retries
        with scope() as session:
            mark_failed(session, message, f"{type(exc).__name__}: {exc}")
        return None
    with scope() as session:
        mark_sent(session, message, result)
    return result


def send_due(
    scope: SessionScope,
    perform: Perform,
    *,
    keys: list[str] | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
) -> dict[str, str]:
    """Send every claimable row (or only ``keys``); return {key: result} of those sent."""
    with scope() as session:
        ids = due_ids(session, keys=keys, created_before=created_before, limit=limit)
        keys_by_id = dict(
            session.execute(
                select(OutboxMessage.id, OutboxMessage.key).where(OutboxMessage.id.in_(ids))
            ).all()
        )
    sent: dict[str, str] = {}
    for message_id in ids:
        result = send_one(scope, message_id, perform)
        if result is not None:
            sent[keys_by_id[message_id]] = result
    return sent


def unsent_keys(session: Session) -> list[str]:
    """Keys of rows not sent yet (whether claimed, backing off or due)."""
    return list(
        session.scalars(
            select(OutboxMessage.key)
            .where(OutboxMessage.sent_at.is_(None))
            .order_by(OutboxMessage.id)
        )
    )


def enqueue_generation(
    session: Session, *, prefix: str, deployment: str, parameters: dict[str, Any]
) -> OutboxMessage:
    """Enqueue under ``<prefix>:<n>``, n one more than the rows already under that prefix.

    For a start whose earlier key (and so its run) must not be reused: a restart after that
    run was lost or failed before doing anything.
    """
    count = session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.key.like(f"{prefix}:%"))
    )
    return enqueue(
        session, key=f"{prefix}:{int(count or 0) + 1}", deployment=deployment, parameters=parameters
    )


def enqueue_restart(session: Session, provision_id: int) -> OutboxMessage:
    """Queue a new provisioning run for a paid provision that has no run to retry."""
    return enqueue_generation(
        session,
        prefix=f"restart:provision:{provision_id}",
        deployment=PROVISION_DEPLOYMENT,
        parameters={"provision_id": provision_id},
    )


def enqueue_upgrade_restart(session: Session, upgrade_id: int) -> OutboxMessage:
    """Queue a new upgrade run for a paid upgrade that has no run to retry."""
    return enqueue_generation(
        session,
        prefix=f"restart:upgrade:{upgrade_id}",
        deployment=UPGRADE_DEPLOYMENT,
        parameters={"upgrade_id": upgrade_id},
    )
