"""Dashboard data: domains, mailboxes, warmup history, health labels, the verdict, what to do next.

Reads only the app DB (the flows mirror vendor state into it) and uses core.health for every
judgement, so the dashboard and the warmup-sync flow always agree. When warmup started is read
from the warmup steps' mirror rows, so the dashboard says what the progress page said.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import object_session
from sqlalchemy.orm import selectinload

from core.db import utcnow
from core.health import ADVICE
from core.health import FULL_DAILY_VOLUME
from core.health import FULL_VOLUME_DAYS
from core.health import MIN_WARMUP_DAYS
from core.health import RAMP_DAILY_VOLUME
from core.health import DayStats
from core.health import HealthLabel
from core.health import Verdict
from core.health import health_label
from core.health import mailbox_verdict
from core.health import overall_verdict
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import StepStatus
from core.models import WarmupSnapshot
from portal.charts import CARD
from portal.charts import Frame
from portal.charts import sparkline
from portal.charts import warmup_chart

HISTORY_DAYS = 30
HEYREACH_LIST_URL = "https://app.heyreach.io/app/lists/{list_id}"
PLUSVIBE_LOGIN_URL = "https://app.plusvibe.ai/login"
# PlusVibe's warmup schedule as tasks/plusvibe.py sets it (WARMUP_DEFAULTS; a test keeps them
# equal): warmup emails per mailbox start at 2 a day and rise by 2 a day up to 30.
WARMUP_FIRST_DAY = 2
WARMUP_DAILY_STEP = 2
WARMUP_MAX_PER_DAY = 30
# How often the sync-warmup deployment stores PlusVibe's numbers (prefect.yaml; a test keeps
# them equal): the first numbers of a new mailbox reach the dashboard within this long.
WARMUP_SYNC_INTERVAL_S = 900


@dataclass
class MailboxView:
    """One mailbox on the dashboard."""

    id: int
    address: str
    status: str
    warmup_enabled: bool
    label: HealthLabel | None
    advice: str | None
    verdict: Verdict
    health: float | None
    reply_rate: float | None
    sent_today: int | None
    chart: Any
    spark: Any
    started: date | None = None
    # Warmup is on but no numbers were stored yet (the next warmup sync brings them).
    awaiting_numbers: bool = False
    warmup_since: datetime | None = None


@dataclass
class DomainView:
    """One domain card."""

    id: int
    name: str
    status: str
    dns_ok: bool
    dmarc_ok: bool
    mailboxes: list[MailboxView] = field(default_factory=list)


def _history(snapshots: list[WarmupSnapshot], today: date) -> list[WarmupSnapshot]:
    since = today - timedelta(days=HISTORY_DAYS - 1)
    return [s for s in snapshots if s.day >= since]


def _started(snapshots: list[WarmupSnapshot]) -> date | None:
    sent = [s.day for s in snapshots if (s.warmup_sent or 0) > 0]
    if sent:
        return min(sent)
    if snapshots:
        return min(s.day for s in snapshots)
    return None


def mailbox_view(
    mailbox: Mailbox,
    domain_ok: bool,
    today: date,
    warmup_since: datetime | None = None,
    frame: Frame = CARD,
) -> MailboxView:
    """Build the dashboard view of one mailbox (pure apart from reading loaded rows).

    ``warmup_since`` is when its warmup step switched warmup on (None if unknown).
    """
    snapshots = sorted(mailbox.snapshots, key=lambda s: s.day)
    history = _history(snapshots, today)
    stats = [DayStats(s.day, s.health, s.reply_rate, s.sent) for s in history]
    started = _started(snapshots)
    awaiting = mailbox.warmup_enabled and not snapshots
    if awaiting and warmup_since is not None:
        # Warmup is on and counting from the moment it was switched on, numbers or not.
        started = warmup_since.date()
    label = (
        HealthLabel(mailbox.health_label)
        if mailbox.health_label in set(HealthLabel)
        else health_label(stats, warmup_started_on=started)
    )
    verdict = mailbox_verdict(label=label, warmup_started_on=started, today=today, dns_ok=domain_ok)
    # An at-risk verdict already says the label's advice; saying it twice reads as a glitch.
    advice = ADVICE[label] if label and ADVICE[label] != verdict.message else None
    latest = history[-1] if history else None
    today_row = next((s for s in history if s.day == today), None)
    return MailboxView(
        id=mailbox.id,
        address=mailbox.address,
        status=mailbox.status or "pending",
        warmup_enabled=mailbox.warmup_enabled,
        label=label,
        advice=advice,
        verdict=verdict,
        health=latest.health if latest else None,
        reply_rate=latest.reply_rate if latest else None,
        sent_today=today_row.sent if today_row else None,
        chart=warmup_chart(
            [s.day for s in history],
            [s.health for s in history],
            [s.reply_rate for s in history],
            title=f"Warmup health and warmup reply rate of {mailbox.address}",
            ramp_from=started,
            today=today,
            frame=frame,
        ),
        spark=sparkline(
            [None if s.sent is None else float(s.sent) for s in history],
            title=f"Campaign emails sent per day from {mailbox.address}",
        ),
        started=started,
        awaiting_numbers=awaiting,
        warmup_since=warmup_since if awaiting else None,
    )


def warmup_switched_on(provision: Provision) -> dict[int | str | None, datetime]:
    """When each warmup step switched warmup on, by upgrade id (None: the first order), and by
    ``"replacement-<id>"`` for a domain replacement's run."""
    starts: dict[int | str | None, datetime] = {}
    for step in provision.steps:
        if step.status != StepStatus.COMPLETED.value or step.finished_at is None:
            continue
        if step.step_key == "warmup":
            starts[None] = step.finished_at
        elif step.step_key.startswith("upgrade-") and step.step_key.endswith(":warmup"):
            starts[int(step.step_key.split(":", 1)[0].removeprefix("upgrade-"))] = step.finished_at
        elif step.step_key.startswith("replacement-") and step.step_key.endswith(":warmup"):
            starts[step.step_key.split(":", 1)[0]] = step.finished_at
    return starts


def replacement_runs(provision: Provision) -> dict[int, int]:
    """The provision's replacement domains: new domain id -> its replacement's id."""
    session = object_session(provision)
    if session is None:
        return {}
    return dict(
        session.execute(
            select(DomainReplacement.new_domain_id, DomainReplacement.id).where(
                DomainReplacement.provision_id == provision.id
            )
        ).all()
    )


def warmup_since(
    provision: Provision,
    domain: Domain,
    starts: dict[int | str | None, datetime] | None = None,
    runs: dict[int, int] | None = None,
) -> datetime | None:
    """When warmup was switched on for ``domain``'s mailboxes (None while it is not known).

    ``starts`` is ``warmup_switched_on(provision)`` and ``runs`` ``replacement_runs(provision)``
    when the caller has them already.
    """
    starts = warmup_switched_on(provision) if starts is None else starts
    if domain.upgrade_id is None:
        runs = replacement_runs(provision) if runs is None else runs
        if domain.id in runs:
            # A replacement's new domain warms up from its own run, never from the order's.
            return starts.get(f"replacement-{runs[domain.id]}")
    since = starts.get(domain.upgrade_id)
    # Rows older than the step mirror: the order's activation is when its warmup was on.
    return since or (provision.activated_at if domain.upgrade_id is None else None)


@dataclass(frozen=True)
class VolumeStage:
    """A stretch of days with one safe cold-email volume per mailbox (``end`` None: onwards)."""

    start: date
    end: date | None
    per_mailbox: int
    total: int
    warmup: str


def volume_plan(started: date, mailboxes: int) -> list[VolumeStage]:
    """The safe daily cold-email volume over the coming days, by core.health's verdict rules.

    It holds while warmup stays healthy; the dashboard's verdict has the last word every day.
    """
    last_ramp_day = MIN_WARMUP_DAYS - 1
    top = min(WARMUP_FIRST_DAY + WARMUP_DAILY_STEP * last_ramp_day, WARMUP_MAX_PER_DAY)
    stages = (
        (0, last_ramp_day, 0, f"{WARMUP_FIRST_DAY} rising to {top} warmup emails a day"),
        (MIN_WARMUP_DAYS, FULL_VOLUME_DAYS - 1, RAMP_DAILY_VOLUME, f"{WARMUP_MAX_PER_DAY} a day"),
        (FULL_VOLUME_DAYS, None, FULL_DAILY_VOLUME, f"{WARMUP_MAX_PER_DAY} a day"),
    )
    return [
        VolumeStage(
            started + timedelta(days=first),
            None if last is None else started + timedelta(days=last),
            volume,
            volume * mailboxes,
            warmup,
        )
        for first, last, volume, warmup in stages
    ]


def load_provision(db: Session, user_id: int) -> Provision | None:
    """The student's provision with tier, steps, domains, mailboxes and snapshots loaded."""
    return db.scalar(
        select(Provision)
        .where(Provision.user_id == user_id)
        .options(
            selectinload(Provision.tier),
            selectinload(Provision.steps),
            selectinload(Provision.domains)
            .selectinload(Domain.mailboxes)
            .selectinload(Mailbox.snapshots),
        )
    )


def dashboard(provision: Provision) -> dict[str, Any]:
    """Everything the dashboard page shows for a provision."""
    today = utcnow().date()
    domains = []
    views: list[MailboxView] = []
    starts = warmup_switched_on(provision)
    runs = replacement_runs(provision)
    for domain in provision.domains:
        dns_ok = (domain.status or "").upper() == "ACTIVE"
        dmarc_ok = bool(domain.dmarc_email)
        card = DomainView(domain.id, domain.name, domain.status or "pending", dns_ok, dmarc_ok)
        since = warmup_since(provision, domain, starts, runs)
        for mailbox in domain.mailboxes:
            view = mailbox_view(mailbox, dns_ok and dmarc_ok, today, since)
            card.mailboxes.append(view)
            # A retired (replaced) domain's mailboxes no longer send: they count nowhere.
            if domain.retired_at is None:
                views.append(view)
        domains.append(card)
    labels: dict[str, int] = {}
    for view in views:
        key = view.label.value if view.label else "no data"
        labels[key] = labels.get(key, 0) + 1
    sent_today = sum(v.sent_today or 0 for v in views)
    replies = [v.reply_rate for v in views if v.reply_rate is not None]
    waiting = [v.warmup_since for v in views if v.awaiting_numbers and v.warmup_since]
    starts = [v.started for v in views if v.started is not None]
    started = min(starts) if starts else None
    return {
        "domains": domains,
        "mailboxes": views,
        "verdict": overall_verdict([v.verdict for v in views]),
        "labels": labels,
        "sent_today": sent_today,
        "reply_rate": sum(replies) / len(replies) if replies else None,
        "heyreach_url": HEYREACH_LIST_URL.format(list_id=provision.heyreach_list_id)
        if provision.heyreach_list_id
        else None,
        "plusvibe_url": PLUSVIBE_LOGIN_URL,
        # Set while some mailbox warms up without numbers yet: when its warmup was switched on.
        "awaiting_since": min(waiting) if waiting else None,
        "sync_interval_s": WARMUP_SYNC_INTERVAL_S,
        "started": started,
        "campaigns_from": started + timedelta(days=MIN_WARMUP_DAYS) if started else None,
        "plan": volume_plan(started, len(views)) if started else [],
        "today": today,
        "warmup_days": MIN_WARMUP_DAYS,
    }
