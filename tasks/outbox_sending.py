"""Performing outbox rows from flows: start each row's deployment under the row's key."""

from __future__ import annotations

from datetime import datetime

from prefect.deployments import run_deployment

from core import outbox
from tasks import runtime


def perform(message: outbox.Message) -> str:
    """Start the message's deployment under its key (run_deployment is idempotent on the key)."""
    if message.kind != outbox.START_DEPLOYMENT:
        raise ValueError(f"unknown outbox message kind {message.kind!r}")
    run = run_deployment(
        message.deployment,
        parameters=message.parameters,
        idempotency_key=message.key,
        timeout=0,
        as_subflow=False,
    )
    return str(run.id)


def send_pending(
    *, created_before: datetime | None = None, keys: list[str] | None = None
) -> dict[str, str]:
    """Send the claimable outbox rows (those created before ``created_before``, or ``keys``)."""
    return outbox.send_due(runtime.db, perform, keys=keys, created_before=created_before)
