"""Notification emails: queue them once (unique key), deliver each at most once per claim.

The student's "ready" and "needs attention" emails are written here too (plain text, from what
the run set up), so every email's words live beside the code that sends them.

Queueing happens inside the caller's DB session, in the same transaction as the state change it
reports. Delivery claims a row with a compare-and-set (a fresh ``claim_token``), sends it, then
marks it sent; two senders therefore never send the same row. A crash after the SMTP server
accepted an email but before ``sent_at`` was written leaves the claim to expire after
``CLAIM_LEASE``, and the email is then sent once more (at worst one duplicate, with the same
Message-ID). A failed send releases the claim and is tried again by a later sweep, with backoff.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any
from uuid import uuid4

from prefect import task
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from prefect.logging import get_run_logger
from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.health import FULL_DAILY_VOLUME
from core.health import FULL_VOLUME_DAYS
from core.health import MIN_WARMUP_DAYS
from core.health import RAMP_DAILY_VOLUME
from core.mailer import Email
from core.mailer import mailer_from_settings
from core.models import Notification
from core.models import Provision
from core.models import Role
from core.models import User
from tasks import runtime
from tasks.policies import vendor_task_options

# A claim older than this is presumed dead (its sender crashed) and may be taken over.
CLAIM_LEASE = timedelta(minutes=10)
# After a failed send: wait RETRY_BASE * 2**(attempts-1), at most RETRY_CAP, before the next one.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# About a day of tries; after that an admin reads last_error on the row.
MAX_ATTEMPTS = 30
MAX_ERROR = 2000
# Where students sign in to PlusVibe (the dashboard links the same page, portal/insights.py).
PLUSVIBE_LOGIN_URL = "https://app.plusvibe.ai/login"
SIGNATURE = "The Outbound Bootcamp team\n(This address does not read replies: ask your instructor.)"


def _log() -> Any:
    # Inside a run, the run's logger (shown in the Prefect UI); in a bare hook, the module's.
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("tasks.notifications")


def queue(session: Session, *, key: str, recipient: str, subject: str, body: str) -> str:
    """Queue one email unless its key is already queued (reruns and retries are harmless)."""
    if session.scalar(select(Notification.id).where(Notification.key == key)) is None:
        session.add(Notification(key=key, recipient=recipient, subject=subject, body=body))
    return key


def queue_for_student(
    session: Session, provision: Provision, *, key: str, subject: str, body: str
) -> str:
    """Queue an email to the provision's student; return its key."""
    return queue(session, key=key, recipient=provision.user.email, subject=subject, body=body)


def queue_for_admins(session: Session, *, key: str, subject: str, body: str) -> list[str]:
    """Queue one email per active admin (``<key>:admin:<user id>``); return the keys."""
    admins = session.scalars(
        select(User).where(User.role == Role.ADMIN.value, User.is_active.is_(True))
    )
    return [
        queue(
            session,
            key=f"{key}:admin:{admin.id}",
            recipient=admin.email,
            subject=subject,
            body=body,
        )
        for admin in admins
    ]


def _greeting(provision: Provision) -> str:
    name = (provision.user.name or "").split(" ")[0]
    return f"Hello {name}," if name else "Hello,"


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


def ready_email(provision: Provision, summary: dict[str, Any], *, portal_url: str) -> str:
    """The "your infrastructure is ready" email: what was set up, where, how to sign in, when to send."""
    domains = [d["name"] for d in summary["domains"]]
    mailboxes = int(summary["mailbox_count"])
    started = provision.activated_at or utcnow()
    ready_on = started + timedelta(days=MIN_WARMUP_DAYS)
    full_on = started + timedelta(days=FULL_VOLUME_DAYS)
    what = [
        f"- {len(domains)} domains: {', '.join(domains)}, with their mail records (MX, SPF, "
        "DKIM, DMARC)",
        f"- {mailboxes} mailboxes on these domains, connected to PlusVibe with warmup switched on",
    ]
    if provision.heyreach_list_id:
        what.append("- a HeyReach lead list for your LinkedIn outreach")
    login = summary.get("plusvibe_login") or "the email shown on your dashboard"
    return "\n".join(
        [
            _greeting(provision),
            "",
            "Your outbound infrastructure is set up and your mailboxes have started warming up.",
            "",
            "WHAT WE SET UP",
            *what,
            "",
            "YOUR DASHBOARD",
            f"{portal_url.rstrip('/')}/dashboard",
            "It shows each mailbox's warmup health, whether you are ready to send, and your "
            "PlusVibe login.",
            "",
            "SIGNING IN TO PLUSVIBE",
            f"Go to {PLUSVIBE_LOGIN_URL} and sign in as {login}. Your password is on your "
            'dashboard (press "Show password"); we never send it by email.',
            "",
            "WHEN TO START SENDING",
            f"Warmup takes {MIN_WARMUP_DAYS} days: send no campaigns from these mailboxes before "
            f"{_day(ready_on)}, when your dashboard says they are ready. Then start slowly, at "
            f"{RAMP_DAILY_VOLUME} emails a day per mailbox ({mailboxes * RAMP_DAILY_VOLUME} a day "
            f"in total), and go up to {FULL_DAILY_VOLUME} per mailbox "
            f"({mailboxes * FULL_DAILY_VOLUME} a day) from {_day(full_on)}. Keep warmup on "
            "the whole time.",
            "",
            SIGNATURE,
        ]
    )


def failure_email(
    provision: Provision, message: str, *, step_title: str | None, portal_url: str
) -> str:
    """The student's part of a failure email: what stopped, what happens next, where to follow it."""
    where = f' at "{step_title}"' if step_title else ""
    return "\n".join(
        [
            _greeting(provision),
            "",
            f"Setting up your outbound infrastructure stopped{where}:",
            message,
            "",
            "WHAT HAPPENS NOW",
            "Your instructor has been told and can resume the setup from the step that stopped; "
            "everything finished so far is kept, and nothing is bought twice. You do not need to "
            "do anything unless the message above asks you to.",
            "",
            "FOLLOW IT",
            f"{portal_url.rstrip('/')}/progress",
            "",
            SIGNATURE,
        ]
    )


def queue_failure(
    session: Session,
    provision: Provision,
    *,
    key: str,
    student_subject: str,
    student_body: str,
    admin_detail: str,
) -> list[str]:
    """Queue a failure's emails: plain words to the student, the technical detail to admins."""
    keys = [
        queue_for_student(session, provision, key=key, subject=student_subject, body=student_body)
    ]
    keys += queue_for_admins(
        session,
        key=key,
        subject=f"[outbound] Provision {provision.id} ({provision.user.email}) failed",
        body=f"Student: {provision.user.email}\nProvision: {provision.id}\n\n{admin_detail}\n\n"
        f"What the student was told:\n\n{student_body}",
    )
    return keys


def _retry_after(attempts: int) -> timedelta:
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_CAP)


def _due(row: Notification, now: datetime) -> bool:
    if row.claimed_at is None:
        return True
    if row.claim_token is not None:
        return row.claimed_at < now - CLAIM_LEASE  # a sender died holding it
    return row.claimed_at < now - _retry_after(row.attempts)  # the last try failed


def _claim(row: Notification, now: datetime) -> str | None:
    """Compare-and-set the row's claim from what we read to a fresh token; None if we lost."""
    token = uuid4().hex
    unchanged = [
        Notification.id == row.id,
        Notification.sent_at.is_(None),
        Notification.attempts == row.attempts,
        Notification.claimed_at.is_(None)
        if row.claimed_at is None
        else Notification.claimed_at == row.claimed_at,
        Notification.claim_token.is_(None)
        if row.claim_token is None
        else Notification.claim_token == row.claim_token,
    ]
    with runtime.db() as session:
        won = session.execute(
            update(Notification)
            .where(and_(*unchanged))
            .values(claimed_at=now, claim_token=token, attempts=row.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
    return token if won else None


def deliver_pending(*, keys: list[str] | None = None, limit: int = 200) -> dict[str, list[str]]:
    """Send unsent notifications (only ``keys`` when given); return the keys sent and failed."""
    now = utcnow()
    query = (
        select(Notification)
        .where(
            Notification.sent_at.is_(None),
            Notification.attempts < MAX_ATTEMPTS,
            # Claimed or tried within the shortest backoff: certainly not due yet.
            or_(Notification.claimed_at.is_(None), Notification.claimed_at < now - RETRY_BASE),
        )
        .order_by(Notification.id)
        .limit(limit)
    )
    if keys is not None:
        if not keys:
            return {"sent": [], "failed": []}
        query = query.where(Notification.key.in_(keys))
    with runtime.db() as session:
        candidates = [row for row in session.scalars(query) if _due(row, now)]
    mailer = mailer_from_settings(runtime.settings())
    sent: list[str] = []
    failed: list[str] = []
    for row in candidates:
        token = _claim(row, now)
        if token is None:
            continue  # another sender holds it
        email = Email(key=row.key, recipient=row.recipient, subject=row.subject, body=row.body)
        try:
            mailer.send(email)
        except Exception as exc:  # noqa: BLE001 - any failure leaves it for the next sweep
            _release(row.id, token, f"{type(exc).__name__}: {exc}")
            _log().warning("notification %s not sent (will retry): %s", row.key, exc)
            failed.append(row.key)
            continue
        _mark_sent(row.id, token)
        sent.append(row.key)
    return {"sent": sent, "failed": failed}


def _mark_sent(notification_id: int, token: str) -> None:
    with runtime.db() as session:
        session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.claim_token == token)
            .values(sent_at=utcnow(), claim_token=None, last_error=None)
            .execution_options(synchronize_session=False)
        )


def _release(notification_id: int, token: str, error: str) -> None:
    # Keep claimed_at (the time of this try) for the backoff; drop the token so it is free.
    with runtime.db() as session:
        session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.claim_token == token)
            .values(claim_token=None, last_error=error[:MAX_ERROR])
            .execution_options(synchronize_session=False)
        )


def deliver_quietly(keys: list[str] | None = None) -> dict[str, Any]:
    """Deliver, but never raise: callers are hooks and finishing steps that must not fail on mail."""
    try:
        return deliver_pending(keys=keys)
    except Exception as exc:  # noqa: BLE001 - the sweeper delivers whatever this leaves unsent
        _log().warning("notification delivery postponed to the next sweep: %s", exc)
        return {"sent": [], "failed": [], "error": str(exc)}


@task(name="deliver-notifications", **vendor_task_options(None, retries=0))
def deliver_notifications(keys: list[str] | None = None) -> dict[str, list[str]]:
    """Send queued notifications (all due ones, or only ``keys``); failures wait for the sweep."""
    return deliver_pending(keys=keys)
