"""The money-safe domain purchase protocol (invariant M1: a domain is bought at most once).

Zapmail has no idempotency key and a lost answer may still have charged, so the protocol is:

1. Under the provision's lock, reconcile first: any domain with a recorded intent is looked up
   in the provision's own Zapmail workspace; found means bought.
2. Before spending: a stale availability answer is re-checked, and the wallet must cover the
   total. Either failing stops the run for good with nothing spent.
3. Record the intent (committed) before the single buy call; never retry that call blindly.
4. After the call, whatever it answered, list the workspace: found means bought. A domain still
   missing is searched for until ``purchase_settle_s`` after its intent; only if it is still
   absent then (Zapmail refunds taken names and drops unpaid orders) and still free is it
   proven not bought, and bought again (at most ``MAX_ROUNDS`` rounds per attempt).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clients.errors import VendorError
from clients.zapmail import ZapmailClient
from core.db import utcnow
from core.models import Domain
from core.models import DomainCheck
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from tasks import runtime
from tasks.errors import AmbiguousPurchaseError
from tasks.errors import ProvisioningBlockedError

AVAILABILITY_BATCH = 20  # Zapmail's available-bulk maximum
SETTLE_POLL_S = 10.0
# Buy rounds per attempt: a round only repeats for names proven not bought after settling.
MAX_ROUNDS = 3


def buy_domains(provision_id: int, names: Sequence[str], details: dict[str, Any]) -> dict[str, str]:
    """Make sure every named domain is bought exactly once; return name -> Zapmail domain id."""
    workspace_id = _workspace_id(provision_id)
    client = runtime.zapmail().for_workspace(workspace_id)
    for _round in range(MAX_ROUNDS):
        if _in_state(provision_id, names, PurchaseState.INTENT):
            _reconcile(provision_id, client, names)
            _settle(provision_id, client, _in_state(provision_id, names, PurchaseState.INTENT))
        todo = _in_state(provision_id, names, PurchaseState.SELECTED)
        if not todo:
            break
        _refuse_if_cancelled(provision_id)
        prices = _confirm_available(client, todo)
        _confirm_wallet(client, prices)
        _record_intent(provision_id, prices)
        details.setdefault("buy_calls", []).append(sorted(todo))
        try:
            client.buy_domains(todo)
        except VendorError as exc:
            if not exc.outcome_unknown:
                # The vendor refused before charging (4xx, 429, connection never made).
                _revert_intent(provision_id, todo)
                raise
            details.setdefault("outcome_unknown", []).append(str(exc))
        # Whatever the answer said, the workspace is the truth.
        _reconcile(provision_id, client, names)
        _settle(provision_id, client, _in_state(provision_id, names, PurchaseState.INTENT))
    bought = _purchased_ids(provision_id, names)
    _keep_renewing(provision_id, client, names)
    return bought


def _refuse_if_cancelled(provision_id: int) -> None:
    # A run that missed the cancellation (it ignores Cancelling, or raced the webhook) must still
    # never spend for a subscription that has ended.
    with runtime.db() as session:
        status = session.scalar(select(Provision.status).where(Provision.id == provision_id))
    if status == ProvisionStatus.CANCELLED:
        raise ProvisioningBlockedError(
            f"provision {provision_id} is cancelled; nothing is bought",
            student_message="Your subscription has ended, so no domains were bought.",
            remedy="none",
        )


def _keep_renewing(provision_id: int, client: ZapmailClient, names: Sequence[str]) -> None:
    # API-bought domains default to no auto-renew: without this a paying student's domains
    # would lapse after a year. One bulk call, only for the domains not yet switched on.
    with runtime.db() as session:
        rows = [row for row in _domains(session, provision_id, names) if row.auto_renew is not True]
        ids = [row.zapmail_domain_id for row in rows if row.zapmail_domain_id]
    if not ids:
        return
    client.set_auto_renew(ids, True)
    with runtime.db() as session:
        for row in _domains(session, provision_id, names):
            row.auto_renew = True


def _workspace_id(provision_id: int) -> str:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None or not provision.zapmail_workspace_id:
            raise RuntimeError(f"provision {provision_id} has no Zapmail workspace yet")
        return provision.zapmail_workspace_id


def _domains(session: Any, provision_id: int, names: Iterable[str]) -> list[Domain]:
    rows = list(
        session.scalars(
            select(Domain).where(Domain.provision_id == provision_id, Domain.name.in_(list(names)))
        )
    )
    return rows


def _states(provision_id: int, names: Sequence[str]) -> dict[str, str]:
    with runtime.db() as session:
        rows = _domains(session, provision_id, names)
    missing = set(names) - {row.name for row in rows}
    if missing:
        raise RuntimeError(f"domains not part of provision {provision_id}: {sorted(missing)}")
    return {row.name: row.purchase_state for row in rows}


def _in_state(provision_id: int, names: Sequence[str], state: PurchaseState) -> list[str]:
    return sorted(name for name, value in _states(provision_id, names).items() if value == state)


def _reconcile(provision_id: int, client: ZapmailClient, names: Sequence[str]) -> set[str]:
    """List the workspace once and mark every named domain found there as purchased."""
    owned = {domain.domain.lower(): domain for domain in client.iter_domains(page_size=100)}
    found = set()
    with runtime.db() as session:
        for row in _domains(session, provision_id, names):
            remote = owned.get(row.name)
            if remote is None:
                continue
            found.add(row.name)
            if row.purchase_state != PurchaseState.PURCHASED:
                row.purchase_state = PurchaseState.PURCHASED.value
                row.purchased_at = utcnow()
            row.zapmail_domain_id = remote.id
            row.status = remote.status
    return found


def _settle(provision_id: int, client: ZapmailClient, pending: list[str]) -> None:
    """Wait for domains with an intent to show up; decide what an absence means once settled."""
    if not pending:
        return
    settle = timedelta(seconds=runtime.settings().purchase_settle_s)
    with runtime.db() as session:
        last_intent = max(
            row.intent_at or utcnow() for row in _domains(session, provision_id, pending)
        )
    deadline = last_intent + settle
    while pending and utcnow() < deadline:
        time.sleep(min(SETTLE_POLL_S, max(0.0, (deadline - utcnow()).total_seconds())))
        _reconcile(provision_id, client, pending)
        pending = _in_state(provision_id, pending, PurchaseState.INTENT)
    if not pending:
        return
    # Settled and still absent: nothing was charged (a taken name is refunded, an unpaid order
    # is dropped). Find out which, so we neither loop on a taken name nor give up on a free one.
    answers = _check(client, pending)
    taken = sorted(name for name in pending if not answers[name][0])
    if taken:
        _abandon(provision_id, taken)
        raise ProvisioningBlockedError(
            f"domains taken before purchase completed: {taken}",
            student_message=(
                f"{', '.join(taken)} was registered by someone else before we could buy it. "
                "Nothing was charged for it; please pick another domain."
            ),
            remedy="another_domain",
        )
    # Free and not in our workspace after settling: proven not bought, so it may be bought again.
    _revert_intent(provision_id, pending)


def _check(client: ZapmailClient, names: Sequence[str]) -> dict[str, tuple[bool, int | None]]:
    """Ask Zapmail about ``names`` (batches of 20), cache the answers, return name -> (free, cents)."""
    answers: dict[str, tuple[bool, int | None]] = {}
    for start in range(0, len(names), AVAILABILITY_BATCH):
        for row in client.check_availability(names[start : start + AVAILABILITY_BATCH]):
            cents = _cents(row.domain_price)
            free = row.status.upper() == "AVAILABLE" and cents is not None
            answers[row.domain_name.lower()] = (free, cents)
    with runtime.db() as session:
        for name, (free, cents) in answers.items():
            cached = session.scalar(select(DomainCheck).where(DomainCheck.name == name))
            if cached is None:
                cached = DomainCheck(name=name, available=free)
                session.add(cached)
            cached.available, cached.price_cents, cached.checked_at = free, cents, utcnow()
    for name in names:
        answers.setdefault(name, (False, None))
    return answers


def _cents(price: Decimal | None) -> int | None:
    return None if price is None else int((price * 100).to_integral_value())


def _confirm_available(client: ZapmailClient, names: list[str]) -> dict[str, int]:
    """Return name -> price in cents, re-checking stale answers; stop if any name is taken."""
    fresh_after = utcnow() - timedelta(seconds=runtime.settings().availability_fresh_s)
    prices: dict[str, int] = {}
    stale = []
    with runtime.db() as session:
        checks = {
            c.name: c
            for c in session.scalars(select(DomainCheck).where(DomainCheck.name.in_(names)))
        }
        for name in names:
            check = checks.get(name)
            if check and check.available and check.price_cents and check.checked_at >= fresh_after:
                prices[name] = check.price_cents
            else:
                stale.append(name)
    if stale:
        answers = _check(client, stale)
        taken = sorted(name for name in stale if not answers[name][0])
        if taken:
            raise ProvisioningBlockedError(
                f"domains no longer available: {taken}",
                student_message=(
                    f"{', '.join(taken)} is no longer available. Nothing was charged for it; "
                    "please pick another domain."
                ),
                remedy="another_domain",
            )
        prices.update({name: answers[name][1] or 0 for name in stale})
    return prices


def _confirm_wallet(client: ZapmailClient, prices: dict[str, int]) -> None:
    """Stop before buying if the operator's wallet cannot pay (Zapmail would only invoice)."""
    balance = client.get_wallet_balance().wallet_balance
    needed = Decimal(sum(prices.values())) / 100
    if balance is None or balance < needed:
        raise ProvisioningBlockedError(
            f"Zapmail wallet balance {balance} is below the {needed} needed",
            student_message=(
                "We are topping up our domain registrar account before buying your domains. "
                "Nothing has been bought or charged yet; our team has been alerted."
            ),
            remedy="refund",
        )


def _record_intent(provision_id: int, prices: dict[str, int]) -> None:
    with runtime.db() as session:
        for row in _domains(session, provision_id, prices):
            row.purchase_state = PurchaseState.INTENT.value
            row.intent_at = utcnow()
            row.price_cents = prices[row.name]


def _revert_intent(provision_id: int, names: Sequence[str]) -> None:
    with runtime.db() as session:
        for row in _domains(session, provision_id, names):
            if row.purchase_state == PurchaseState.INTENT:
                row.purchase_state = PurchaseState.SELECTED.value
                row.intent_at = None


def _abandon(provision_id: int, names: Sequence[str]) -> None:
    with runtime.db() as session:
        for row in _domains(session, provision_id, names):
            row.purchase_state = PurchaseState.ABANDONED.value


def _purchased_ids(provision_id: int, names: Sequence[str]) -> dict[str, str]:
    with runtime.db() as session:
        rows = _domains(session, provision_id, names)
        result = {row.name: row.zapmail_domain_id for row in rows if row.zapmail_domain_id}
    missing = sorted(set(names) - set(result))
    if missing:
        raise AmbiguousPurchaseError(f"domains not confirmed in the workspace yet: {missing}")
    return result
