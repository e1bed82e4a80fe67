"""SQLAlchemy models of the app DB: users, tiers, provisions and what they own, the step mirror.

Constraints here protect users and money: one provision per student, domain names unique across
the system, mailbox addresses unique, Stripe ids unique, webhook events unique per provider.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import CheckConstraint
from sqlalchemy import Date
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.db import Base
from core.db import UTCDateTime
from core.db import utcnow


def _in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class Role(StrEnum):
    STUDENT = "student"
    ADMIN = "admin"


class ProvisionStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UPGRADING = "upgrading"
    PAST_DUE = "past_due"


class PurchaseState(StrEnum):
    """Where a domain is in the money-safe purchase protocol (invariant M1)."""

    SELECTED = "selected"  # chosen by the student, nothing spent
    INTENT = "intent"  # intent recorded; a buy call may be in flight or its answer lost
    PURCHASED = "purchased"  # seen in our Zapmail workspace: bought exactly once
    ABANDONED = "abandoned"  # never bought (unavailable, wallet short); nothing charged


class UpgradeStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PROVISIONING = "provisioning"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ReplacementStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PROVISIONING = "provisioning"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.STUDENT.value)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The cohort a student was invited with (see Cohort at the end of this module).
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohorts.id"), index=True)

    provision: Mapped[Provision | None] = relationship(back_populates="user")


class Tier(Base):
    __tablename__ = "tiers"
    __table_args__ = (
        CheckConstraint("domain_count > 0", name="domain_count_positive"),
        # Zapmail allows at most 5 mailboxes per domain.
        CheckConstraint("mailboxes_per_domain BETWEEN 1 AND 5", name="mailboxes_per_domain"),
        CheckConstraint("setup_cents >= 0 AND monthly_cents >= 0", name="prices_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    domain_count: Mapped[int] = mapped_column(Integer)
    mailboxes_per_domain: Mapped[int] = mapped_column(Integer, default=2)
    setup_cents: Mapped[int] = mapped_column(Integer)
    monthly_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    stripe_product_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_setup_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_monthly_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    # Burned-domain replacements: this many per 30 days are included, the next cost the fee.
    replacements_included: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    replacement_fee_cents: Mapped[int] = mapped_column(Integer, default=2900, server_default="2900")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def mailbox_count(self) -> int:
        """Mailboxes the tier includes in total."""
        return self.domain_count * self.mailboxes_per_domain


class Provision(Base):
    """One student's purchased infrastructure and where its provisioning stands."""

    __tablename__ = "provisions"
    __table_args__ = (CheckConstraint(_in("status", ProvisionStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # unique: one provision per student.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(20), default=ProvisionStatus.PENDING_PAYMENT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    # What the student should be offered after a failure for good: "another_domain", "refund",
    # "capacity" (operator must add mailbox slots, then retry).
    remedy: Mapped[str | None] = mapped_column(String(50))

    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)

    sender_first_name: Mapped[str] = mapped_column(String(100), default="")
    sender_last_name: Mapped[str] = mapped_column(String(100), default="")
    # One username pattern per mailbox on each domain, e.g. ["{first}", "{first}.{last}"].
    username_patterns: Mapped[list[str]] = mapped_column(JSON, default=list)

    zapmail_workspace_id: Mapped[str | None] = mapped_column(String(255))
    plusvibe_workspace_id: Mapped[str | None] = mapped_column(String(64))
    plusvibe_client_id: Mapped[str | None] = mapped_column(String(64))
    plusvibe_client_email: Mapped[str | None] = mapped_column(String(254))
    # Fernet token (core.crypto); never the plaintext password.
    plusvibe_client_password_enc: Mapped[str | None] = mapped_column(Text)
    heyreach_list_id: Mapped[int | None] = mapped_column(BigInteger)

    current_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    # What a suspended run waits for ("domains_active", "mailboxes_active"); the sweeper reads it.
    waiting_for: Mapped[str | None] = mapped_column(String(32))
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_refresh_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    # The Stripe subscription as last applied, to ignore out-of-order events,
    # and the HeyReach lead count the dashboard shows (written by the refresh flow).
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    stripe_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heyreach_lead_count: Mapped[int | None] = mapped_column(Integer)

    # Run fencing: each run claim bumps the epoch; a mutating task whose epoch is
    # no longer current (a zombie of an older run) stops before touching a vendor.
    run_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Each cancellation request gets its own run (a retry after a failed run really redoes it).
    cancel_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the subscription became unpaid/paused/past due; dunning cancels after a grace period.
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The student's main website, where every cold domain forwards (None: none).
    forward_to: Mapped[str | None] = mapped_column(String(2048))

    user: Mapped[User] = relationship(back_populates="provision")
    tier: Mapped[Tier] = relationship()
    domains: Mapped[list[Domain]] = relationship(
        back_populates="provision", order_by="Domain.id", cascade="all, delete-orphan"
    )
    steps: Mapped[list[ProvisioningStep]] = relationship(
        back_populates="provision", order_by="ProvisioningStep.position", cascade="all"
    )
    upgrades: Mapped[list[Upgrade]] = relationship(
        back_populates="provision", order_by="Upgrade.id", cascade="all"
    )


class Domain(Base):
    __tablename__ = "domains"
    __table_args__ = (
        CheckConstraint(_in("purchase_state", PurchaseState), name="purchase_state"),
        Index("ix_domains_provision_id", "provision_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    # The upgrade that added this domain; None for the original purchase.
    upgrade_id: Mapped[int | None] = mapped_column(ForeignKey("upgrades.id", ondelete="SET NULL"))
    # unique across the system: two students can never own the same domain.
    name: Mapped[str] = mapped_column(String(253), unique=True)
    price_cents: Mapped[int | None] = mapped_column(Integer)
    zapmail_domain_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Vendor lifecycle as last seen (PENDING, ACTIVE, ...); None before purchase.
    status: Mapped[str | None] = mapped_column(String(32))
    purchase_state: Mapped[str] = mapped_column(String(16), default=PurchaseState.SELECTED.value)
    intent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purchased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dmarc_email: Mapped[str | None] = mapped_column(String(254))
    auto_renew: Mapped[bool | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Where Zapmail forwards the domain's web traffic, as last set or read.
    forwarded_to: Mapped[str | None] = mapped_column(String(2048))
    # An admin judged the domain burned (None: not marked); health can say so on its own too.
    burned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Replaced by another domain: its mailboxes no longer send and are removed at renewal.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    provision: Mapped[Provision] = relationship(back_populates="domains")
    mailboxes: Mapped[list[Mailbox]] = relationship(
        back_populates="domain", order_by="Mailbox.id", cascade="all, delete-orphan"
    )


class Mailbox(Base):
    __tablename__ = "mailboxes"
    __table_args__ = (Index("ix_mailboxes_domain_id", "domain_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    zapmail_mailbox_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    plusvibe_account_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str | None] = mapped_column(String(32))
    warmup_enabled: Mapped[bool] = mapped_column(default=False)
    health_label: Mapped[str | None] = mapped_column(String(16))
    # Cancellation: when Zapmail was asked to remove it at the next renewal (None = never).
    removal_scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The Zapmail export that carries it to PlusVibe (the vendor's own record; 3 per week).
    export_id: Mapped[str | None] = mapped_column(String(255))
    export_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    domain: Mapped[Domain] = relationship(back_populates="mailboxes")
    snapshots: Mapped[list[WarmupSnapshot]] = relationship(
        back_populates="mailbox", order_by="WarmupSnapshot.day", cascade="all, delete-orphan"
    )


class ProvisioningStep(Base):
    """The mirror of one pipeline step, the only thing the portal reads about a run."""

    __tablename__ = "provisioning_steps"
    __table_args__ = (
        UniqueConstraint("provision_id", "step_key"),
        CheckConstraint(_in("status", StepStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    step_key: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Plain words for the student, and the technical detail for admins.
    error_message: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    provision: Mapped[Provision] = relationship(back_populates="steps")


class WarmupSnapshot(Base):
    """One mailbox's warmup statistics for one day (the dashboard charts)."""

    __tablename__ = "warmup_snapshots"
    __table_args__ = (UniqueConstraint("mailbox_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    # None where the vendor reports "no data" (PlusVibe's -1).
    health: Mapped[float | None] = mapped_column(Float)
    reply_rate: Mapped[float | None] = mapped_column(Float)
    sent: Mapped[int | None] = mapped_column(Integer)
    warmup_sent: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    mailbox: Mapped[Mailbox] = relationship(back_populates="snapshots")


class WebhookEvent(Base):
    """A received webhook delivery; (provider, event_id) is processed once."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    # The vendor's own creation time, to ignore events older than the state we hold.
    event_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditLog(Base):
    """An admin action, a sensitive read (a password reveal) or an account event (a sign-in)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id"),
        # The admin audit page filters by actor and by date (0009).
        Index("ix_audit_log_actor_id", "actor_id"),
        Index("ix_audit_log_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # From where, with ip (0009): the browser that signed in, reset a password, acted.
    user_agent: Mapped[str | None] = mapped_column(String(255))


class Upgrade(Base):
    """A move to a larger tier: paid first, then the upgrade flow adds domains and mailboxes."""

    __tablename__ = "upgrades"
    __table_args__ = (
        CheckConstraint(_in("status", UpgradeStatus), name="status"),
        Index("ix_upgrades_provision_id", "provision_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    from_tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"))
    to_tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(20), default=UpgradeStatus.PENDING_PAYMENT.value)
    # The Stripe objects that prove payment; unique so one payment starts one upgrade.
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    status_reason: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    # An upgrade is paid by two invoices, the prorated subscription change and the extra setup
    # fee (a separate invoice: Stripe bills one-off items apart); it starts once both are.
    stripe_proration_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    proration_paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fee_paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    run_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    provision: Mapped[Provision] = relationship(back_populates="upgrades")
    from_tier: Mapped[Tier] = relationship(foreign_keys=[from_tier_id])
    to_tier: Mapped[Tier] = relationship(foreign_keys=[to_tier_id])


class DomainCheck(Base):
    """A cached Zapmail availability answer, shared by every student (the check budget is global)."""

    __tablename__ = "domain_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    available: Mapped[bool] = mapped_column()
    price_cents: Mapped[int | None] = mapped_column(Integer)
    renew_price_cents: Mapped[int | None] = mapped_column(Integer)
    is_premium: Mapped[bool] = mapped_column(default=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginAttempt(Base):
    """A failed sign-in, for throttling by email and by client address."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_at", "email", "attempted_at"),
        Index("ix_login_attempts_ip_at", "ip", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str | None] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notification(Base):
    """An email to send once: the key makes retries and reruns idempotent."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Delivery bookkeeping (tasks/notifications.py): a sender claims a row by setting a fresh
    # claim_token with a compare-and-set, so two senders never send the same email.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)


# Wizard drafts and the availability-check budget.


class WizardDraft(Base):
    """A student's unfinished wizard choices, kept in the DB so they survive signing out."""

    __tablename__ = "wizard_drafts"
    __table_args__ = (UniqueConstraint("user_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # "order" (the first purchase) or "upgrade".
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AvailabilityCall(Base):
    """One Zapmail availability call by the portal: the rolling window of the shared budget."""

    __tablename__ = "availability_calls"
    __table_args__ = (Index("ix_availability_calls_called_at", "called_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    called_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    name_count: Mapped[int] = mapped_column(Integer)
    # "ok", "rate_limited" (a 429) or "error"; "sent" is written before the call, so a worker
    # that dies while Zapmail answers still leaves the call counted.
    outcome: Mapped[str] = mapped_column(String(16))
    # After a 429: no call before this instant (the vendor's Retry-After).
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PendingCheck(Base):
    """A name one waiting request needs checked; drained into shared 20-name Zapmail calls."""

    __tablename__ = "pending_checks"
    __table_args__ = (
        Index("ix_pending_checks_requested_at", "requested_at"),
        Index("ix_pending_checks_token", "token"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The waiting request (one per check() call, in any gunicorn worker).
    token: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(253))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set while a request has this name in a Zapmail call; a claim older than the claim timeout
    # belongs to a worker that died, and the next drainer takes the name over.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # None while waiting; then "answered", "paused" or "error" for the waiting request to report.
    outcome: Mapped[str | None] = mapped_column(String(16))
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Money and order integrity: the purchase-attempt ledger, order snapshots, the outbox.


class AttemptOutcome(StrEnum):
    """What the vendor's answer to one buy call proves (see tasks/purchase.py)."""

    SENT = "sent"  # recorded before the call; no answer seen yet (or the worker died)
    REFUSED = "refused"  # proven refusal before execution: the connection was never made
    UNKNOWN = "unknown"  # any other failure: the vendor may have executed it
    ACCEPTED = "accepted"  # a 2xx that parsed as a purchase


class AttemptResolution(StrEnum):
    """What reconciliation against the vendor's listing decided about one attempt."""

    BOUGHT = "bought"  # the domain is in our workspace
    NOT_BOUGHT = "not_bought"  # refused, or proven absent after settling and still free
    TAKEN = "taken"  # proven absent and registered by someone else: nothing charged


class PurchaseAttempt(Base):
    """One buy call for one domain: written before the call, resolved by listing the workspace.

    An unresolved row is also the wallet reservation of its price: concurrent runs subtract it
    from the balance before spending (tasks/purchase.py).
    """

    __tablename__ = "purchase_attempts"
    __table_args__ = (
        UniqueConstraint("domain_name", "attempt_no"),
        CheckConstraint(_in("outcome", AttemptOutcome), name="outcome"),
        Index("ix_purchase_attempts_unresolved", "resolution"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    upgrade_id: Mapped[int | None] = mapped_column(ForeignKey("upgrades.id", ondelete="SET NULL"))
    domain_name: Mapped[str] = mapped_column(String(253))
    attempt_no: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default=AttemptOutcome.SENT.value)
    # The vendor's answer in one line (status and message, never a body with secrets).
    answer: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrderStatus(StrEnum):
    OPEN = "open"  # its Checkout Session may still be paid
    PAID = "paid"  # this snapshot won: it is what gets provisioned
    SUPERSEDED = "superseded"  # the student changed the order; a late payment is refunded
    REFUNDED = "refunded"  # paid but not fulfilled: refunded, its subscription cancelled
    EXPIRED = "expired"  # the session expired unpaid


class OrderSnapshot(Base):
    """What one Checkout Session sells, frozen when it is created and verified when it is paid."""

    __tablename__ = "order_snapshots"
    __table_args__ = (
        CheckConstraint(_in("status", OrderStatus), name="status"),
        Index("ix_order_snapshots_provision_id", "provision_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"))
    setup_cents: Mapped[int] = mapped_column(Integer)
    monthly_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    setup_price_id: Mapped[str | None] = mapped_column(String(255))
    monthly_price_id: Mapped[str | None] = mapped_column(String(255))
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    sender_first_name: Mapped[str] = mapped_column(String(100), default="")
    sender_last_name: Mapped[str] = mapped_column(String(100), default="")
    username_patterns: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.OPEN.value)
    # Why a paid session was refunded (shown to the student) and what Stripe answered.
    decision_reason: Mapped[str | None] = mapped_column(Text)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxMessage(Base):
    """A side effect to perform after the commit that decided it (start a run, refund a session).

    The key is the idempotency key of the effect, so a message sent twice does it once.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The effect's own id (a flow run id, a refund id), for the admin page and the watchdog.
    result: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)


# Accounts: server-side sessions and single-use password tokens.


class UserSession(Base):
    """A signed-in session: the cookie carries a random token, this row its SHA-256 (the id).

    Every request checks the row, so revoking it (sign-out, password change, "sign out
    everywhere") or outliving the idle/absolute lifetimes ends the session wherever the cookie is.
    """

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Written at most once a minute per session (portal/auth/sessions.py): cheap on polling pages.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why it ended: sign_out, password_reset, admin, cli, idle, absolute.
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # How the sign-in passed the second step (totp, recovery_code; 0009): an admin's session
    # without one is refused, whatever made the user an admin.
    second_factor: Mapped[str | None] = mapped_column(String(16))


class TokenPurpose(StrEnum):
    RESET = "reset"  # "forgot password?" link
    INVITE = "invite"  # first password of an invited student


class PasswordToken(Base):
    """A single-use, expiring link to set a password; only the token's SHA-256 is stored."""

    __tablename__ = "password_tokens"
    __table_args__ = (
        CheckConstraint(_in("purpose", TokenPurpose), name="purpose"),
        Index("ix_password_tokens_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The client address that asked for it (kept for the audit of resets).
    requested_ip: Mapped[str | None] = mapped_column(String(64))
    # An admin withdrew this invitation (used_at is set too, so the link stops working).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Cohorts: a bootcamp class whose students are invited together from a CSV.


class Cohort(Base):
    """A class of students starting together; its students are users with its cohort_id."""

    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    starts_on: Mapped[date] = mapped_column(Date)
    instructor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# Admin security: the second factor of admin accounts.


class TotpFactor(Base):
    """An admin's TOTP secret, sealed with the data keys (core/crypto.py); never in plaintext.

    Unconfirmed until the first code from the authenticator app proves the app holds it; a code's
    time step is remembered so that no code is accepted twice.
    """

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The 30-second step of the last code accepted: only later steps are accepted after it.
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A single-use recovery code of an admin; only its SHA-256 is stored (~79 random bits)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Sender profile: the display names and picture a student set for all of their mailboxes.


class SenderProfileStatus(StrEnum):
    PENDING = "pending"  # asked for; the sender-profile run has not finished it yet
    APPLIED = "applied"  # every mailbox at Zapmail shows it
    FAILED = "failed"  # the run stopped; ``error`` says why (asking again starts a new run)


class SenderProfile(Base):
    """The sender names and picture a student asked for, applied to every mailbox by a run.

    ``revision`` grows with each request; a run applies only the revision it was started for,
    and only while it is still the latest (tasks/sender_profile.py). The picture is served to
    Zapmail from ``picture_token``'s unguessable URL (core/sender_profile.py).
    """

    __tablename__ = "sender_profiles"
    __table_args__ = (CheckConstraint(_in("status", SenderProfileStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(
        ForeignKey("provisions.id", ondelete="CASCADE"), unique=True
    )
    revision: Mapped[int] = mapped_column(Integer, default=1)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    # At most 1 MB (core/images.py), kept in the app DB so every portal host can serve it.
    picture: Mapped[bytes | None] = mapped_column(LargeBinary)
    picture_sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(32))
    picture_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=SenderProfileStatus.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)


# Parity: daily domain health checks, the operator's settings, capacity snapshots.


class DomainHealth(Base):
    """One domain's DNS records and health score as read on one day, and the problems found.

    One row per domain and day: an on-demand check later that day replaces it.
    """

    __tablename__ = "domain_health"
    __table_args__ = (UniqueConstraint("domain_id", "checked_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    checked_on: Mapped[date] = mapped_column(Date)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # [{"type", "host", "value", "state"}] as read, each marked ok, missing or changed.
    records: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Zapmail's 0-100 score (at most 30 is critical); None before the domain is live.
    score: Mapped[int | None] = mapped_column(Integer)
    # [{"code", "record", "state", "advice"}]: what is wrong, in words for the student.
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class OperatorSettings(Base):
    """The operator's own numbers (a single row): the size of the next cohort to plan for."""

    __tablename__ = "operator_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    next_cohort_size: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CapacitySnapshot(Base):
    """The Zapmail wallet and mailbox slots as read by the scheduled capacity check."""

    __tablename__ = "capacity_snapshots"
    __table_args__ = (Index("ix_capacity_snapshots_taken_at", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # None where Zapmail could not be read (then ``error`` says why).
    wallet_cents: Mapped[int | None] = mapped_column(Integer)
    slots_purchased: Mapped[int | None] = mapped_column(Integer)
    slots_free: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class DomainReplacement(Base):
    """A burned domain swapped for a new one: included or paid, then the replace-domain flow runs.

    One replacement per old domain, ever: a failed one is retried, never requested twice, so a
    domain can never be paid for or bought twice through this path.
    """

    __tablename__ = "domain_replacements"
    __table_args__ = (
        CheckConstraint(_in("status", ReplacementStatus), name="status"),
        CheckConstraint("payment IN ('included', 'charged')", name="payment"),
        Index("ix_domain_replacements_provision_id", "provision_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provision_id: Mapped[int] = mapped_column(ForeignKey("provisions.id", ondelete="CASCADE"))
    old_domain_id: Mapped[int] = mapped_column(
        ForeignKey("domains.id", ondelete="CASCADE"), unique=True
    )
    # The new domain's row exists from the request on (SELECTED): its name is reserved.
    new_domain_id: Mapped[int] = mapped_column(
        ForeignKey("domains.id", ondelete="CASCADE"), unique=True
    )
    # Why: "critical_score", "health_label", "admin" (marked burned) or "admin_request".
    reason: Mapped[str] = mapped_column(String(32))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default=ReplacementStatus.PENDING_PAYMENT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    # "included" (within the tier's allowance) or "charged" (a one-time Stripe invoice).
    payment: Mapped[str] = mapped_column(String(16))
    fee_cents: Mapped[int] = mapped_column(Integer, default=0)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    run_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    provision: Mapped[Provision] = relationship()
    old_domain: Mapped[Domain] = relationship(foreign_keys=[old_domain_id])
    new_domain: Mapped[Domain] = relationship(foreign_keys=[new_domain_id])
