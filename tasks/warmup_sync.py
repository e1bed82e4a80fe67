"""Warmup sync: one PlusVibe listing per workspace page, batched snapshot and label writes.

One code path for the scheduled sync (every provision that still warms up) and the dashboard
refresh (one provision). Listings go through the rate-limited PlusVibe client; a batch of
workspaces is written in a few statements (a bulk upsert of the day's snapshots, a bulk label
update) that run the same on PostgreSQL and SQLite. A workspace PlusVibe cannot list is
reported, never allowed to lose the others' numbers.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from clients.errors import VendorError
from clients.plusvibe import Account
from clients.plusvibe import PlusVibeClient
from core.db import utcnow
from core.health import TREND_DAYS
from core.health import DayStats
from core.health import health_label
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import WarmupSnapshot
from core.settings import Settings
from tasks import runtime
from tasks.limits import PLUSVIBE
from tasks.limits import paced
from tasks.policies import is_transient
from tasks.policies import vendor_task_options

# Past-due students keep their mailboxes (and warmup) until the subscription is cancelled, so
# their dashboard stays current; cancelled provisions are paused and no longer read.
SYNC_STATUSES = (
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.PAST_DUE.value,
)
# A listing that fails transiently is tried again in place: retrying the whole batch task
# would list its other workspaces again and spend their share of the rate limit twice.
LISTING_ATTEMPTS = 3
LISTING_BACKOFF_S = (0.5, 2.0)
UPSERT_CHUNK = 500
_client_lock = threading.Lock()
_client: tuple[Settings, PlusVibeClient] | None = None


@dataclass(frozen=True)
class Observation:
    """One mailbox as PlusVibe lists it today."""

    address: str
    account_id: str
    warmup_active: bool
    warmup_enabled_on: date | None
    health: float | None
    reply_rate: float | None
    sent: int | None
    warmup_sent: int | None


def observe(account: Account) -> Observation:
    """The numbers the app keeps from one PlusVibe account row."""
    analytics = account.payload.analytics
    return Observation(
        address=account.email.strip().lower(),
        account_id=account.id,
        warmup_active=account.warmup_active,
        warmup_enabled_on=_day_of(account.warmup_enb_dt),
        health=analytics.health_scores.overall_7d,
        reply_rate=analytics.reply_rates.reply_rate_7d,
        sent=_count(analytics.daily_counters.email_sent_today),
        warmup_sent=_count(analytics.daily_counters.warmup_email_sent_today),
    )


@task(name="find-warmup-provisions", **vendor_task_options(None))
def find_sync_provisions() -> list[int]:
    """Ids of the provisions whose mailboxes warm up at PlusVibe (active, upgrading, past due)."""
    with runtime.db() as session:
        return list(
            session.scalars(
                select(Provision.id)
                .where(
                    Provision.status.in_(SYNC_STATUSES),
                    Provision.plusvibe_workspace_id.is_not(None),
                )
                .order_by(Provision.id)
            )
        )


@task(name="sync-warmup-batch", **vendor_task_options(None))
def sync_warmup_batch(provision_ids: list[int], day: date) -> dict[str, Any]:
    """List each provision's PlusVibe workspace once and store ``day``'s snapshots and labels."""
    with runtime.db() as session:
        workspaces = dict(
            session.execute(
                select(Provision.id, Provision.plusvibe_workspace_id).where(
                    Provision.id.in_(provision_ids), Provision.plusvibe_workspace_id.is_not(None)
                )
            ).all()
        )
    observed: dict[int, list[Observation]] = {}
    failed: list[int] = []
    for provision_id in sorted(workspaces):
        try:
            observed[provision_id] = list_workspace(workspaces[provision_id])
        except VendorError as exc:
            failed.append(provision_id)
            get_run_logger().warning(
                "PlusVibe workspace of provision %s not read: %s", provision_id, exc
            )
    with runtime.db() as session:
        snapshots, labels = write_observations(session, day, observed)
    return {
        "provisions": len(provision_ids),
        "workspaces": len(observed),
        "snapshots": snapshots,
        "labels": labels,
        "failed": failed,
    }


def list_workspace(workspace_id: str) -> list[Observation]:
    """Every account of a workspace (one call per page), retrying transient failures in place."""
    for attempt in range(LISTING_ATTEMPTS):
        try:
            return [observe(account) for account in _plusvibe().iter_accounts(workspace_id)]
        except VendorError as exc:
            if attempt == LISTING_ATTEMPTS - 1 or not is_transient(exc):
                raise
            delay = LISTING_BACKOFF_S[min(attempt, len(LISTING_BACKOFF_S) - 1)]
            time.sleep(delay * random.uniform(1.0, 1.5))
    raise AssertionError("unreachable")


def write_observations(
    session: Session, day: date, observed: dict[int, list[Observation]]
) -> tuple[int, int]:
    """Upsert ``day``'s snapshot of every listed mailbox and update changed labels in bulk.

    Returns (snapshots written, mailboxes updated). Accounts PlusVibe lists that the app does
    not know are ignored; mailboxes PlusVibe does not list keep their last numbers.
    """
    if not observed:
        return 0, 0
    wanted = {(pid, obs.address): obs for pid, rows in observed.items() for obs in rows}
    mailboxes = session.execute(
        select(
            Mailbox.id,
            Mailbox.address,
            Domain.provision_id,
            Mailbox.health_label,
            Mailbox.plusvibe_account_id,
            Mailbox.warmup_enabled,
        )
        .join(Domain)
        .where(Domain.provision_id.in_(list(observed)))
        .order_by(Mailbox.id)
    ).all()
    matched = [
        (box, wanted[(box.provision_id, box.address.lower())])
        for box in mailboxes
        if (box.provision_id, box.address.lower()) in wanted
    ]
    if not matched:
        return 0, 0
    now = utcnow()
    upsert_snapshots(
        session,
        [
            {
                "mailbox_id": box.id,
                "day": day,
                "health": obs.health,
                "reply_rate": obs.reply_rate,
                "sent": obs.sent,
                "warmup_sent": obs.warmup_sent,
                "recorded_at": now,
            }
            for box, obs in matched
        ],
    )
    ids = [box.id for box, _obs in matched]
    history = _recent_history(session, ids, day)
    first_warm = dict(
        session.execute(
            select(WarmupSnapshot.mailbox_id, func.min(WarmupSnapshot.day))
            .where(WarmupSnapshot.mailbox_id.in_(ids), WarmupSnapshot.warmup_sent > 0)
            .group_by(WarmupSnapshot.mailbox_id)
        ).all()
    )
    changes = []
    for box, obs in matched:
        started = min(
            (d for d in (obs.warmup_enabled_on, first_warm.get(box.id)) if d is not None),
            default=None,
        )
        label = health_label(history[box.id], warmup_started_on=started)
        value = label.value if label else None
        if (value, obs.account_id, obs.warmup_active) != (
            box.health_label,
            box.plusvibe_account_id,
            box.warmup_enabled,
        ):
            changes.append(
                {
                    "id": box.id,
                    "health_label": value,
                    "plusvibe_account_id": obs.account_id,
                    "warmup_enabled": obs.warmup_active,
                }
            )
    if changes:
        session.execute(update(Mailbox), changes)  # one executemany by primary key
    return len(matched), len(changes)


def upsert_snapshots(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace (mailbox, day) snapshot rows in multi-row statements."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"no snapshot upsert for {dialect}")
    table = WarmupSnapshot.__table__
    for start in range(0, len(rows), UPSERT_CHUNK):
        stmt = insert(table).values(list(rows[start : start + UPSERT_CHUNK]))
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.mailbox_id, table.c.day],
            set_={
                name: stmt.excluded[name]
                for name in ("health", "reply_rate", "sent", "warmup_sent", "recorded_at")
            },
        )
        session.execute(stmt)


def _recent_history(session: Session, ids: list[int], day: date) -> dict[int, list[DayStats]]:
    since = day - timedelta(days=TREND_DAYS - 1)
    history: dict[int, list[DayStats]] = defaultdict(list)
    rows = session.execute(
        select(
            WarmupSnapshot.mailbox_id,
            WarmupSnapshot.day,
            WarmupSnapshot.health,
            WarmupSnapshot.reply_rate,
            WarmupSnapshot.sent,
        ).where(
            WarmupSnapshot.mailbox_id.in_(ids),
            WarmupSnapshot.day >= since,
            WarmupSnapshot.day <= day,
        )
    )
    for mailbox_id, snap_day, health, reply_rate, sent in rows:
        history[mailbox_id].append(DayStats(snap_day, health, reply_rate, sent))
    return history


def _plusvibe() -> PlusVibeClient:
    # The sync's own client: paced, so its hundreds of listings in a row take each slot of the
    # PlusVibe limit as it refills instead of asking early and waiting out Prefect's 423s.
    # Batches run in threads: one client per process (and per settings, which tests swap).
    global _client
    settings = runtime.settings()
    with _client_lock:
        if _client is None or _client[0] is not settings:
            if _client is not None:
                _client[1].close()
            _client = (settings, PlusVibeClient.from_settings(settings, transport=paced(PLUSVIBE)))
        return _client[1]


def _day_of(timestamp: str | None) -> date | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp).date()
    except ValueError:
        return None


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)
