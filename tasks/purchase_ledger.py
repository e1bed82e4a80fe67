"""The purchase-attempt ledger: one row per buy call per domain, resolved once its outcome is proven.

The ledger (``PurchaseAttempt``) and ``Domain.purchase_state`` move together in one transaction:
``intent`` while an attempt is unresolved, ``purchased`` once one is ``bought``, back to
``selected`` when all are ``not_bought``, ``abandoned`` when ``taken``. The protocol that
decides the outcomes is tasks/purchase.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy import select

from core.db import utcnow
from core.models import AttemptOutcome
from core.models import AttemptResolution
from core.models import Domain
from core.models import PurchaseAttempt
from core.models import PurchaseState
from tasks import runtime
from tasks.errors import AmbiguousPurchaseError


def domains_of(session: Any, provision_id: int, names: Iterable[str]) -> list[Domain]:
    """The provision's domain rows named in ``names``."""
    rows = list(
        session.scalars(
            select(Domain).where(Domain.provision_id == provision_id, Domain.name.in_(list(names)))
        )
    )
    return rows


def states_of(provision_id: int, names: Sequence[str]) -> dict[str, str]:
    """Each named domain's purchase state; raise if a name is not the provision's."""
    with runtime.db() as session:
        rows = domains_of(session, provision_id, names)
    missing = set(names) - {row.name for row in rows}
    if missing:
        raise RuntimeError(f"domains not part of provision {provision_id}: {sorted(missing)}")
    return {row.name: row.purchase_state for row in rows}


def in_state(provision_id: int, names: Sequence[str], state: PurchaseState) -> list[str]:
    """The names (of ``names``) whose domain is in ``state``."""
    return sorted(name for name, value in states_of(provision_id, names).items() if value == state)


def record_attempts(session: Any, provision_id: int, prices: dict[str, int]) -> None:
    """Insert one ``sent`` attempt per domain and mark the intents, in the caller's transaction."""
    now = utcnow()
    run_id = _flow_run_id()
    rows = domains_of(session, provision_id, prices)
    for row in rows:
        # Never while an attempt of this name is unresolved, or bought by this provision.
        blocking = session.scalar(
            select(func.count()).where(
                PurchaseAttempt.domain_name == row.name,
                (PurchaseAttempt.resolution.is_(None))
                | (
                    (PurchaseAttempt.resolution == AttemptResolution.BOUGHT.value)
                    & (PurchaseAttempt.provision_id == provision_id)
                ),
            )
        )
        if blocking:
            raise AmbiguousPurchaseError(
                f"{row.name} has a purchase attempt in flight or bought; not buying it again"
            )
        last = session.scalar(
            select(func.coalesce(func.max(PurchaseAttempt.attempt_no), 0)).where(
                PurchaseAttempt.domain_name == row.name
            )
        )
        session.add(
            PurchaseAttempt(
                provision_id=provision_id, upgrade_id=row.upgrade_id, domain_name=row.name,
                attempt_no=last + 1, price_cents=prices[row.name], flow_run_id=run_id,
                outcome=AttemptOutcome.SENT.value, started_at=now,
            )
        )  # fmt: skip
        row.purchase_state = PurchaseState.INTENT.value
        row.intent_at = now
        row.price_cents = prices[row.name]


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        value = flow_run.id
    except Exception:  # noqa: BLE001 - outside a run (or Prefect unavailable): no id
        return None
    return None if value is None else str(value)


def answered(provision_id: int, names: Sequence[str], outcome: AttemptOutcome, answer: str) -> None:
    """Record what the buy call's answer proves on its unresolved attempts."""
    with runtime.db() as session:
        for attempt in open_attempts(session, provision_id, names):
            attempt.outcome = outcome.value
            attempt.answer = answer
            attempt.answered_at = utcnow()


def open_attempts(session: Any, provision_id: int, names: Iterable[str]) -> list[PurchaseAttempt]:
    """The unresolved attempts of the named domains of a provision."""
    return list(
        session.scalars(
            select(PurchaseAttempt).where(
                PurchaseAttempt.provision_id == provision_id,
                PurchaseAttempt.domain_name.in_(list(names)),
                PurchaseAttempt.resolution.is_(None),
            )
        )
    )


def resolve(
    session: Any, provision_id: int, names: Iterable[str], resolution: AttemptResolution
) -> None:
    """Resolve the open attempts of ``names`` with ``resolution``, in the caller's transaction."""
    for attempt in open_attempts(session, provision_id, names):
        attempt.resolution = resolution.value
        attempt.resolved_at = utcnow()


def resolve_not_bought(provision_id: int, names: Sequence[str]) -> None:
    """Proven not bought: resolve the attempts and make the domains buyable again."""
    with runtime.db() as session:
        resolve(session, provision_id, names, AttemptResolution.NOT_BOUGHT)
        for row in domains_of(session, provision_id, names):
            if row.purchase_state == PurchaseState.INTENT:
                row.purchase_state = PurchaseState.SELECTED.value
                row.intent_at = None


def abandon(provision_id: int, names: Sequence[str]) -> None:
    """Taken by someone else: resolve the attempts and give the domains up (nothing charged)."""
    with runtime.db() as session:
        resolve(session, provision_id, names, AttemptResolution.TAKEN)
        for row in domains_of(session, provision_id, names):
            row.purchase_state = PurchaseState.ABANDONED.value


def purchased_ids(provision_id: int, names: Sequence[str]) -> dict[str, str]:
    """Zapmail ids of the named domains; raise if any is not confirmed in the workspace."""
    with runtime.db() as session:
        rows = domains_of(session, provision_id, names)
        result = {row.name: row.zapmail_domain_id for row in rows if row.zapmail_domain_id}
    missing = sorted(set(names) - set(result))
    if missing:
        raise AmbiguousPurchaseError(f"domains not confirmed in the workspace yet: {missing}")
    return result


def open_attempts_of(session: Any, provision_id: int) -> list[PurchaseAttempt]:
    """Every unresolved attempt of a provision."""
    return list(
        session.scalars(
            select(PurchaseAttempt).where(
                PurchaseAttempt.provision_id == provision_id,
                PurchaseAttempt.resolution.is_(None),
            )
        )
    )
