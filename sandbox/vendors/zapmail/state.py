"""Zapmail's in-memory account: workspaces, wallet, domains, mailboxes, sequencer logins, exports.

Lifecycles are stored as due times and resolved lazily against the simulated clock.
"""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from decimal import Decimal
from typing import Any

from sandbox.context import SandboxContext

MAX_MAILBOXES_PER_DOMAIN = 5
NAME_SERVERS = ["pns61.cloudns.net", "pns62.cloudns.com", "pns63.cloudns.net", "pns64.cloudns.uk"]
YEAR_S = 365 * 86400


def iso(ts: float | None) -> str | None:
    """Format simulated epoch seconds the way Zapmail does (ISO-8601, ms, Z)."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class Workspace:
    """A Zapmail workspace; its id is the x-workspace-key value."""

    id: str
    name: str
    created_at: float
    billing: dict[str, Any] | None = None
    primary: bool = False


@dataclass
class Domain:
    """A domain bought through the sandbox (PENDING until active_at)."""

    id: str
    workspace_id: str
    name: str
    created_at: float
    active_at: float
    years: int
    dns_shield: bool = False
    auto_renew: bool = False
    dmarc_email: str | None = None
    updated_at: float = 0.0
    forward_to: str | None = None
    # DNS edits made through the control plane: (type, host) -> value, None = record deleted.
    dns_drift: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # A health score pinned through the control plane (None: computed from the records).
    health_pin: int | None = None

    def status(self, now: float) -> str:
        """Return PENDING or ACTIVE at simulated time `now`."""
        return "ACTIVE" if now >= self.active_at else "PENDING"


@dataclass
class Mailbox:
    """A mailbox on a domain (IN_PROGRESS until ready_at, then ACTIVE or FAILED)."""

    id: str
    domain_id: str
    workspace_id: str
    username: str
    domain: str
    first_name: str
    last_name: str
    created_at: float
    ready_at: float
    fails: bool
    app_password: str
    secret: str
    scheduled_removal: bool = False
    profile_picture: str | None = None

    @property
    def email(self) -> str:
        """The mailbox address."""
        return f"{self.username}@{self.domain}"

    def status(self, now: float) -> str:
        """Return IN_PROGRESS, ACTIVE or FAILED at simulated time `now`."""
        if now < self.ready_at:
            return "IN_PROGRESS"
        return "FAILED" if self.fails else "ACTIVE"


@dataclass
class ThirdPartyAccount:
    """A sequencer login registered in a workspace for exports."""

    id: str
    workspace_id: str
    app: str
    email: str
    password: str


@dataclass
class Export:
    """One export job; completes (or fails) at done_at."""

    id: str
    workspace_id: str
    apps: list[str]
    mailbox_ids: list[str]
    account_id: str | None
    created_at: float
    done_at: float
    failure_reason: str | None = None
    delivered: bool = False

    def status(self, now: float) -> str:
        """Return in_progress, completed or failed at simulated time `now`."""
        if self.failure_reason:
            return "failed"
        return "completed" if now >= self.done_at else "in_progress"


@dataclass
class ZapmailState:
    """The whole simulated Zapmail account."""

    ctx: SandboxContext
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    accounts: dict[str, ThirdPartyAccount] = field(default_factory=dict)
    exports: dict[str, Export] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)
    fail_budget: dict[str, int] = field(default_factory=dict)
    wallet: Decimal = Decimal("0")
    primary_id: str = ""
    user_id: str = ""
    created_at: float = 0.0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Return to a fresh account: one primary workspace, the configured wallet."""
        now = self.now()
        self.workspaces.clear()
        self.domains.clear()
        self.mailboxes.clear()
        self.accounts.clear()
        self.exports.clear()
        self.unavailable.clear()
        self.fail_budget.clear()
        self.wallet = Decimal(str(self.ctx.config.wallet_balance)).quantize(Decimal("0.01"))
        self.created_at = now
        self.user_id = self.new_id()
        primary = Workspace(
            id=self.new_id(), name="Primary Workspace", created_at=now, primary=True
        )
        self.workspaces[primary.id] = primary
        self.primary_id = primary.id

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.ctx.clock.timestamp()

    def new_id(self) -> str:
        """Return a UUID drawn from the seeded RNG (stable across restarts)."""
        return str(uuid.UUID(int=self.ctx.rng.getrandbits(128), version=4))

    def new_secret(self, length: int = 16) -> str:
        """Return a random lower-case secret (app passwords are 16 letters)."""
        return "".join(self.ctx.rng.choice(string.ascii_lowercase) for _ in range(length))

    def domain_by_name(self, name: str) -> Domain | None:
        """Find a domain anywhere in the account."""
        return next((d for d in self.domains.values() if d.name == name), None)

    def domains_in(self, workspace_id: str) -> list[Domain]:
        """Domains of one workspace, oldest first."""
        rows = [d for d in self.domains.values() if d.workspace_id == workspace_id]
        return sorted(rows, key=lambda d: (d.created_at, d.name))

    def mailboxes_on(self, domain_id: str) -> list[Mailbox]:
        """Mailboxes of one domain, oldest first."""
        rows = [m for m in self.mailboxes.values() if m.domain_id == domain_id]
        return sorted(rows, key=lambda m: (m.created_at, m.username))

    def take_failure(self, domain: str) -> bool:
        """Consume one injected mailbox failure for `domain`, if any is left."""
        left = self.fail_budget.get(domain, 0)
        if left <= 0:
            return False
        self.fail_budget[domain] = left - 1
        return True

    def dump(self) -> dict[str, Any]:
        """Return the raw state for debugging (GET /_sandbox/zapmail/state)."""
        now = self.now()
        return {
            "wallet": str(self.wallet),
            "primaryWorkspaceId": self.primary_id,
            "workspaces": [
                {"id": w.id, "name": w.name, "primary": w.primary, "billing": w.billing}
                for w in self.workspaces.values()
            ],
            "domains": [
                {
                    "id": d.id,
                    "workspaceId": d.workspace_id,
                    "domain": d.name,
                    "status": d.status(now),
                    "activeAt": iso(d.active_at),
                    "dmarcEmail": d.dmarc_email,
                    "autoRenew": d.auto_renew,
                    "forwardTo": d.forward_to,
                    "dnsDrift": [
                        {"recordType": t, "host": h, "value": v}
                        for (t, h), v in d.dns_drift.items()
                    ],
                    "healthScorePin": d.health_pin,
                }
                for d in self.domains.values()
            ],
            "mailboxes": [
                {
                    "id": m.id,
                    "email": m.email,
                    "domainId": m.domain_id,
                    "workspaceId": m.workspace_id,
                    "status": m.status(now),
                    "readyAt": iso(m.ready_at),
                    "scheduledRemoval": m.scheduled_removal,
                }
                for m in self.mailboxes.values()
            ],
            "thirdPartyAccounts": [
                {"id": a.id, "workspaceId": a.workspace_id, "app": a.app, "email": a.email}
                for a in self.accounts.values()
            ],
            "exports": [
                {
                    "id": e.id,
                    "status": e.status(now),
                    "mailboxIds": e.mailbox_ids,
                    "apps": e.apps,
                    "failureReason": e.failure_reason,
                    "delivered": e.delivered,
                }
                for e in self.exports.values()
            ],
            "unavailable": sorted(self.unavailable),
            "failBudget": dict(self.fail_budget),
        }
