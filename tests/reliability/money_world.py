"""The purchase side of the money state machine: paid provisions, the sandbox's ledger, the DB.

Everything here reads the truth from its owner: charges from the sandbox's wallet ledger, what
a workspace holds from the sandbox's state dump, purchase states from the app database. The
purchase protocol (``tasks.purchase.buy_domains``) is called directly, without Prefect.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy import update

from core.cancellation import request_cancellation
from core.db import Base
from core.db import make_sessionmaker
from core.db import utcnow
from core.models import Domain
from core.models import DomainCheck
from core.models import Provision
from core.models import PurchaseAttempt
from core.settings import Settings
from tasks import purchase
from tasks import runtime
from tasks.policies import is_transient
from tests.factories import make_paid_provision

BUY = "/v2/domains/buy"
LIST = "/v2/domains"
WALLET = "/v2/wallet/balance"
ZAPMAIL_HEADERS = {"x-auth-zapmail": "sandbox-zapmail-key"}
DOMAINS_PER_PROVISION = 2
# Sandbox Zapmail wallet for a normal example (USD); a cohort burst lowers it for one step.
RICH_WALLET = 10000.0


def buy_fn() -> Any:
    """The protocol function itself (the undecorated one if it is a Prefect task)."""
    return getattr(purchase.buy_domains, "fn", purchase.buy_domains)


def delete_all_rows(engine: Engine) -> None:
    """Empty every table of the app database (each example starts from nothing)."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@dataclass
class Outcome:
    """How one purchase attempt ended (from the caller's point of view)."""

    provision_id: int
    how: str  # ok | <exception class name> | killed
    detail: str = ""


@dataclass
class PurchaseWorld:
    """The sandbox, the app database and the settings the protocol runs with."""

    sandbox: Any
    engine: Engine
    settings: Settings
    outcomes: list[Outcome] = field(default_factory=list)
    _serial: int = 0

    # --- set-up -----------------------------------------------------------------------------

    def reset(self) -> None:
        """A fresh sandbox account and an empty database."""
        self.sandbox.reset()
        self.sandbox.configure(rate_limits_enabled=False, domain_activation_s=1.0)
        self.set_wallet(RICH_WALLET)
        delete_all_rows(self.engine)
        self.outcomes.clear()

    def db(self) -> Any:
        """A new ORM session on the app database (caller closes it)."""
        return make_sessionmaker(self.engine)()

    def free_names(self, stem: str, count: int) -> list[tuple[str, int]]:
        """``count`` names the sandbox sells, with their price in cents."""
        rows = httpx.post(
            f"{self.sandbox.zapmail_url}/v2/domains/available-bulk",
            json={"domainNames": [f"{stem}{i}.com" for i in range(20)]},
            headers=ZAPMAIL_HEADERS,
            timeout=10,
        ).json()["data"]["domains"]
        free = [r for r in rows if r["status"] == "AVAILABLE"][:count]
        assert len(free) == count, f"too few free names for {stem}"
        return [(r["domainName"], round(float(r["domainPrice"]) * 100)) for r in free]

    def new_provision(self) -> tuple[int, list[str], int]:
        """A paid provision with its workspace and cached availability; (id, names, cents)."""
        self._serial += 1
        stem = f"mm{self._serial}x{threading.get_ident() % 997}"
        priced = self.free_names(stem, DOMAINS_PER_PROVISION)
        with self.db() as session:
            for name, cents in priced:
                # The wizard's cached answer: issue 13's second charge trusted exactly this.
                session.add(DomainCheck(name=name, available=True, price_cents=cents))
            row = make_paid_provision(
                session, email=f"{stem}@student.test", domains=[n for n, _ in priced]
            )
            workspace = runtime.zapmail().create_workspace(
                f"ws-{stem}", self.settings.zapmail_billing_details
            )
            row.zapmail_workspace_id = workspace.id
            session.commit()
            return row.id, [n for n, _ in priced], sum(c for _, c in priced)

    def set_wallet(self, balance: float) -> None:
        """Set the sandbox's Zapmail wallet (USD)."""
        self.sandbox.control(
            "POST", "/zapmail/wallet", json={"balance": balance}
        ).raise_for_status()

    # --- acting -----------------------------------------------------------------------------

    def attempt(self, provision_id: int, names: list[str]) -> Outcome:
        """One call of the protocol (one task try); any exception is its outcome."""
        try:
            buy_fn()(provision_id, names, {})
            outcome = Outcome(provision_id, "ok")
        except Exception as exc:  # noqa: BLE001 - the machine judges the state, not the raise
            outcome = Outcome(provision_id, type(exc).__name__, str(exc)[:200])
        self.outcomes.append(outcome)
        return outcome

    def attempt_with_retries(self, provision_id: int, names: list[str], tries: int = 6) -> Outcome:
        """Call again after a retryable failure, like Prefect's task retries."""
        outcome = Outcome(provision_id, "none")
        for _ in range(tries):
            try:
                buy_fn()(provision_id, names, {})
                return Outcome(provision_id, "ok")
            except Exception as exc:  # noqa: BLE001
                outcome = Outcome(provision_id, type(exc).__name__, str(exc)[:200])
                if not is_transient(exc):
                    return outcome
        return outcome

    def cancel(self, provision_id: int) -> int:
        """Cancel through core.cancellation; return the ledger's last seq once it committed."""
        with self.db() as session:
            request_cancellation(session, provision_id, reason="student cancelled (state machine)")
            session.commit()
        return self.last_seq()

    def backdate_checks(self) -> None:
        """Make every cached availability answer stale (the protocol must re-check)."""
        with self.db() as session:
            session.execute(update(DomainCheck).values(checked_at=utcnow().replace(year=2000)))
            session.commit()

    # --- reading the truth ------------------------------------------------------------------

    def ledger(self) -> list[dict[str, Any]]:
        """The sandbox's Zapmail ledger (charges and refunds)."""
        return self.sandbox.ledger(vendor="zapmail")

    def last_seq(self) -> int:
        """The sequence number of the newest ledger entry (0 when empty)."""
        return max((e["seq"] for e in self.sandbox.ledger()), default=0)

    def charges(self) -> tuple[Counter[str], Counter[str]]:
        """(purchases, net charges) per domain: net = purchases - refunds."""
        entries = self.ledger()
        bought = Counter(e["item"] for e in entries if e["kind"] == "domain_purchase")
        refunded = Counter(e["item"] for e in entries if e["kind"] == "domain_refund")
        net = Counter({name: bought[name] - refunded[name] for name in bought})
        return bought, net

    def purchases_after(self, seq: int, names: list[str]) -> list[dict[str, Any]]:
        """Charges for ``names`` recorded after ledger entry ``seq``."""
        wanted = set(names)
        return [
            e
            for e in self.ledger()
            if e["kind"] == "domain_purchase" and e["seq"] > seq and e["item"] in wanted
        ]

    def workspace_names(self) -> dict[str, set[str]]:
        """workspace id -> domain names it holds at the sandbox."""
        state = self.sandbox.control("GET", "/zapmail/state").json()
        held: dict[str, set[str]] = {}
        for row in state["domains"]:
            held.setdefault(row["workspaceId"], set()).add(row["domain"])
        return held

    def db_domains(self) -> list[tuple[int, str, str, str | None]]:
        """(provision id, name, purchase_state, workspace id) of every domain row."""
        with self.db() as session:
            rows = session.execute(
                select(
                    Domain.provision_id,
                    Domain.name,
                    Domain.purchase_state,
                    Provision.zapmail_workspace_id,
                ).join(Provision, Provision.id == Domain.provision_id)
            ).all()
        return [tuple(r) for r in rows]

    def unresolved_attempts(self) -> set[str]:
        """Domain names with a purchase attempt not yet resolved (a charge the DB may not know)."""
        with self.db() as session:
            return set(
                session.scalars(
                    select(PurchaseAttempt.domain_name).where(PurchaseAttempt.resolution.is_(None))
                )
            )

    def status(self, provision_id: int) -> str:
        """The provision's status in the database."""
        with self.db() as session:
            return str(session.scalar(select(Provision.status).where(Provision.id == provision_id)))

    def fault_hits(self, fault_id: int) -> int:
        """How many requests one injected fault has caught."""
        faults = self.sandbox.control("GET", "/faults").json()["faults"]
        return next((f["hits"] for f in faults if f["id"] == fault_id), 0)

    def remove_fault(self, fault_id: int) -> None:
        """Delete one fault (used up or not)."""
        self.sandbox.control("DELETE", f"/faults/{fault_id}")
