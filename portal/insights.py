"""Dashboard data: domains, mailboxes, warmup history, health labels and the readiness verdict.

Reads only the app DB (the flows mirror vendor state into it) and uses core.health for every
judgement, so the dashboard and the warmup-sync flow always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import selectinload

from core.db import utcnow
from core.health import ADVICE
from core.health import DayStats
from core.health import HealthLabel
from core.health import Verdict
from core.health import health_label
from core.health import mailbox_verdict
from core.health import overall_verdict
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import WarmupSnapshot
from portal.charts import sparkline
from portal.charts import warmup_chart

HISTORY_DAYS = 30
HEYREACH_LIST_URL = "https://app.heyreach.io/app/lists/{list_id}"
PLUSVIBE_LOGIN_URL = "https://app.plusvibe.ai/login"


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


def mailbox_view(mailbox: Mailbox, domain_ok: bool, today: date) -> MailboxView:
    """Build the dashboard view of one mailbox (pure apart from reading loaded rows)."""
    snapshots = sorted(mailbox.snapshots, key=lambda s: s.day)
    history = _history(snapshots, today)
    stats = [DayStats(s.day, s.health, s.reply_rate, s.sent) for s in history]
    started = _started(snapshots) if mailbox.warmup_enabled or snapshots else None
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
            title=f"Warmup health and reply rate of {mailbox.address}",
        ),
        spark=sparkline(
            [None if s.sent is None else float(s.sent) for s in history],
            title=f"Emails sent per day from {mailbox.address}",
        ),
    )


def load_provision(db: Session, user_id: int) -> Provision | None:
    """The student's provision with tier, domains, mailboxes and snapshots loaded."""
    return db.scalar(
        select(Provision)
        .where(Provision.user_id == user_id)
        .options(
            selectinload(Provision.tier),
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
    for domain in provision.domains:
        dns_ok = (domain.status or "").upper() == "ACTIVE"
        dmarc_ok = bool(domain.dmarc_email)
        card = DomainView(domain.id, domain.name, domain.status or "pending", dns_ok, dmarc_ok)
        for mailbox in domain.mailboxes:
            view = mailbox_view(mailbox, dns_ok and dmarc_ok, today)
            card.mailboxes.append(view)
            views.append(view)
        domains.append(card)
    labels: dict[str, int] = {}
    for view in views:
        key = view.label.value if view.label else "no data"
        labels[key] = labels.get(key, 0) + 1
    sent_today = sum(v.sent_today or 0 for v in views)
    replies = [v.reply_rate for v in views if v.reply_rate is not None]
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
    }
