"""Daily health check of each live cold domain: read DNS and score, compare, store, alert on news.

Two Zapmail reads per domain (its DNS records, its health score), never more often than
``MIN_INTERVAL_S`` apart in this process, so the check takes at most about a third of the
Zapmail budget and provisioning keeps the rest. The result is one ``DomainHealth`` row per domain
and day (a later check that day replaces it). A problem the previous check did not have (a
record deleted or edited, a score turned critical) queues one email to the student and one to
each admin, in the same transaction as the row; a problem that persists is not emailed again.
Each domain's check is cached on (domain, run key), so a retried run reads only what it missed.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

from prefect import task
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.dns_health import PROBLEMS
from core.dns_health import Assessment
from core.dns_health import assess
from core.dns_health import new_alerts
from core.models import Domain
from core.models import DomainHealth
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from tasks import notifications
from tasks import runtime
from tasks.policies import business_key
from tasks.policies import vendor_task_options
from tasks.zapmail import ACTIVE

# Cancelled provisions are no longer read: their domains lapse at renewal.
CHECKED_STATUSES = (
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.PAST_DUE.value,
)
# At most one read a second: about a third of the 3.2/s Zapmail limit the flows share.
MIN_INTERVAL_S = 1.0
_pace_lock = threading.Lock()
_last_call = [0.0]


def _pace() -> None:
    """Wait until MIN_INTERVAL_S has passed since this process's previous health read."""
    with _pace_lock:
        wait = _last_call[0] + MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _last_call[0] = time.monotonic()


@task(name="find-health-domains", **vendor_task_options(None))
def find_health_domains(provision_id: int | None = None) -> list[int]:
    """Ids of the live cold domains to check (of one provision, or of every paying one)."""
    query = (
        select(Domain.id)
        .join(Provision, Provision.id == Domain.provision_id)
        .where(
            Domain.purchase_state == PurchaseState.PURCHASED.value,
            # A domain retired by a replacement no longer sends: its health is nobody's alert.
            Domain.retired_at.is_(None),
            Domain.zapmail_domain_id.is_not(None),
            Domain.status == ACTIVE,
            Provision.status.in_(CHECKED_STATUSES),
            Provision.zapmail_workspace_id.is_not(None),
        )
        .order_by(Domain.provision_id, Domain.id)
    )
    if provision_id is not None:
        query = query.where(Domain.provision_id == provision_id)
    with runtime.db() as session:
        return list(session.scalars(query))


@task(
    name="check-domain-health",
    **vendor_task_options(business_key("domain-health", "domain_id", "run_key")),
)
def check_domain_health(domain_id: int, run_key: str) -> dict[str, Any]:  # noqa: ARG001 - cache key
    """Read one domain's DNS records and score, store the day's result, alert on new problems."""
    with runtime.db() as session:
        domain = session.get(Domain, domain_id)
        if domain is None or domain.provision.status not in CHECKED_STATUSES:
            return {"domain_id": domain_id, "skipped": "no longer checked"}
        name, zid = domain.name, domain.zapmail_domain_id
        workspace = domain.provision.zapmail_workspace_id
        expected_rua = domain.dmarc_email or runtime.settings().dmarc_report_email
    client = runtime.zapmail().for_workspace(workspace)
    _pace()
    found = client.get_dns_records(str(zid)).records
    _pace()
    score = client.get_health_score(str(zid)).score
    rows = [{"type": r.record_type, "host": r.host, "value": r.value} for r in found]
    result = assess(name, rows, dmarc_email=expected_rua, score=score)
    with runtime.db() as session:
        alerts, keys = _store(session, domain_id, result, score)
    notifications.deliver_quietly(keys)
    return {
        "domain": name,
        "score": score,
        "problems": sorted(result.codes),
        "alerts": alerts,
        "calls": 2,
    }


def _store(
    session: Session, domain_id: int, result: Assessment, score: int | None
) -> tuple[list[str], list[str]]:
    """Write today's row; queue the alerts for problems the previous check did not have."""
    today = utcnow().date()
    previous = session.scalar(
        select(DomainHealth)
        .where(DomainHealth.domain_id == domain_id)
        .order_by(DomainHealth.checked_on.desc())
        .limit(1)
    )
    before = {p["code"] for p in previous.problems} if previous is not None else None
    alerts = new_alerts(result.codes, before)
    row = previous if previous is not None and previous.checked_on == today else None
    if row is None:
        row = DomainHealth(domain_id=domain_id, checked_on=today)
        session.add(row)
    row.checked_at = utcnow()
    row.records = result.records
    row.score = score
    row.problems = result.problems
    keys = _queue_alerts(session, domain_id, today, alerts, result) if alerts else []
    return alerts, keys


def _queue_alerts(
    session: Session, domain_id: int, today: date, alerts: list[str], result: Assessment
) -> list[str]:
    domain = session.get(Domain, domain_id)
    assert domain is not None
    provision = domain.provision
    key = f"domain-health:{domain_id}:{today.isoformat()}:{','.join(alerts)}"
    lines = [p["advice"] for p in result.problems if p["code"] in alerts]
    keys = [
        notifications.queue_for_student(
            session,
            provision,
            key=key,
            subject=f"{domain.name}: its email setup needs attention",
            body="\n".join(lines)
            + "\n\nYour dashboard shows every record of the domain and what it means.",
        )
    ]
    keys += notifications.queue_for_admins(
        session,
        key=key,
        subject=f"[outbound] {domain.name} (provision {provision.id}) DNS drift or critical score",
        body=f"Student: {provision.user.email}\nProvision: {provision.id}\nDomain: {domain.name}\n"
        f"New problems: {', '.join(f'{c} ({PROBLEMS[c][0]})' for c in alerts)}\n\n"
        + "\n".join(
            f"{r['type']} {r['host']}: {r['value'] or '(none)'} [{r['state']}]"
            for r in result.records
        ),
    )
    return keys
