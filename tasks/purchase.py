"""The money-safe domain purchase protocol (invariant M1: a domain is bought at most once).

Zapmail has no idempotency key and any answer (a 409 or 429 included) may come after the
charge, so the protocol is:

1. Under the provision's lock, reconcile first: any domain with a recorded intent (an unresolved
   purchase attempt) is looked up in the provision's own Zapmail workspace; found means bought.
2. Before spending: the run must still be current (``ensure_current``), a stale availability
   answer is re-checked, and a domain with an earlier attempt is only bought again on a fresh
   answer (never on a cache). Taken names stop the run for good with nothing spent.
3. Under the wallet lock (account-wide), the balance minus every unresolved attempt of every
   provision (reservations) must cover the buy; then its attempts (one row per domain, outcome
   ``sent``: its reservation) and intents are committed before the single buy call.
4. The only answer that proves a refusal is a connection never made: the attempts are resolved
   ``not_bought``. Every other answer (any status, a 2xx we cannot read, a timeout after
   sending, any exception) is unknown: whatever it said, the workspace is listed; found means
   bought. A domain still missing is searched for until ``purchase_settle_s`` after its intent;
   only if it is still absent then (Zapmail refunds taken names and drops unpaid orders) and
   still free is it proven not bought, and bought again (at most ``MAX_ROUNDS`` rounds).
5. A readable 2xx saying the wallet was short (an invoice, nothing registered) is listed once
   and resolved ``not_bought``; the run stops for good (wallet short) instead of looping.

The attempt ledger and the domains' purchase states are kept by tasks/purchase_ledger.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlalchemy import select

from clients.errors import VendorConnectionError
from clients.zapmail import PurchaseResult
from clients.zapmail import ZapmailClient
from core.db import utcnow
from core.models import AttemptOutcome
from core.models import AttemptResolution
from core.models import DomainCheck
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseAttempt
from core.models import PurchaseState
from tasks import capacity
from tasks import purchase_ledger as ledger
from tasks import runtime
from tasks.errors import PipelineError
from tasks.errors import ProvisioningBlockedError
from tasks.guards import ensure_current
from tasks.locks import wallet_lock

AVAILABILITY_BATCH = 20  # Zapmail's available-bulk maximum
SETTLE_POLL_S = 10.0
# Buy rounds per attempt: a round only repeats for names proven not bought after settling.
MAX_ROUNDS = 3
_ANSWER_CHARS = 300
# The operator tops the wallet up and retries; the student is never refunded for our wallet.
WALLET_REMEDY = "wallet"
WALLET_SHORT_MESSAGE = (
    "We are topping up our domain registrar account before buying your domains. "
    "Nothing has been bought or charged yet; our team has been alerted."
)


class WalletBusyError(PipelineError):
    """The wallet is short only because of other runs' purchases in flight: wait, then retry."""

    retryable = True
    student_message = "Waiting for the registrar account to confirm other purchases."


def buy_domains(provision_id: int, names: Sequence[str], details: dict[str, Any]) -> dict[str, str]:
    """Make sure every named domain is bought exactly once; return name -> Zapmail domain id."""
    workspace_id = _workspace_id(provision_id)
    client = runtime.zapmail().for_workspace(workspace_id)
    fresh: dict[str, int] = {}  # name -> cents, from availability answers of this call only
    for _round in range(MAX_ROUNDS):
        if ledger.in_state(provision_id, names, PurchaseState.INTENT):
            _reconcile(provision_id, client, names)
            fresh.update(
                _settle(
                    provision_id, client, ledger.in_state(provision_id, names, PurchaseState.INTENT)
                )
            )
        todo = ledger.in_state(provision_id, names, PurchaseState.SELECTED)
        if not todo:
            break
        _refuse_if_cancelled(provision_id)
        prices = _confirm_available(client, todo, fresh)
        fresh.clear()  # an answer allows one buy call at most
        _reserve(provision_id, client, prices)
        details.setdefault("buy_calls", []).append(sorted(todo))
        invoice: PurchaseResult | None = None
        try:
            result = client.buy_domains(todo)
        except Exception as exc:
            if _proven_refusal(exc):
                # Nothing reached Zapmail: nothing was charged, and the retry buys afresh.
                ledger.answered(provision_id, todo, AttemptOutcome.REFUSED, _summary(exc))
                ledger.resolve_not_bought(provision_id, todo)
                raise
            # Anything else may have come after the charge: reconcile before anything else.
            ledger.answered(provision_id, todo, AttemptOutcome.UNKNOWN, _summary(exc))
            details.setdefault("outcome_unknown", []).append(_summary(exc))
        else:
            ledger.answered(provision_id, todo, AttemptOutcome.ACCEPTED, _describe(result))
            if result.short:
                invoice = result
        # Whatever the answer said, the workspace is the truth (one listing serves both).
        found = _reconcile(provision_id, client, names)
        if invoice is not None:
            _stop_on_invoice(provision_id, found, todo, invoice)
        fresh.update(
            _settle(
                provision_id, client, ledger.in_state(provision_id, names, PurchaseState.INTENT)
            )
        )
    bought = ledger.purchased_ids(provision_id, names)
    _keep_renewing(provision_id, client, names)
    return bought


def _proven_refusal(exc: BaseException) -> bool:
    # Only a connection never made proves the vendor executed nothing (the client marks a
    # sent request's transport failure outcome_unknown). Any HTTP answer, any parse failure,
    # any other exception is no proof, whatever the client thought of it.
    return isinstance(exc, VendorConnectionError) and not exc.outcome_unknown


def _summary(exc: BaseException) -> str:
    # The client's messages are redacted already; keep one line, bounded.
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:_ANSWER_CHARS]


def _describe(result: PurchaseResult) -> str:
    # The message only: invoice links are payable URLs, not something to keep.
    text = " ".join(f"accepted: {result.message or 'no message'}".split())
    return text[:_ANSWER_CHARS]


def _stop_on_invoice(
    provision_id: int, found: set[str], todo: Sequence[str], result: PurchaseResult
) -> None:
    """Zapmail invoiced instead of paying from the wallet: prove nothing registered, then stop.

    ``found`` is what the listing right after the answer found in the workspace.
    """
    absent = [name for name in todo if name not in found]
    # Nothing registers until the invoice is paid, and nobody pays it: listed absent now means
    # not bought (the order is dropped after ~5 minutes, zapmail.md 7.4).
    ledger.resolve_not_bought(provision_id, absent)
    if not absent:
        return
    with runtime.db() as session:
        # One price per name (a name tried twice has two attempt rows at the same price).
        prices = dict(
            session.execute(
                select(PurchaseAttempt.domain_name, PurchaseAttempt.price_cents).where(
                    PurchaseAttempt.provision_id == provision_id,
                    PurchaseAttempt.domain_name.in_(absent),
                )
            ).all()
        )
    # Zapmail's invoice says the wallet could not cover the buy; its balance is read again later.
    capacity.alert_wallet_stop(
        provision_id, balance_cents=None, reserved_cents=0, needed_cents=sum(prices.values())
    )
    raise ProvisioningBlockedError(
        f"Zapmail wallet short: the buy of {absent} was answered with an invoice for the "
        f"remaining amount ({result.message!r}); nothing was registered",
        student_message=WALLET_SHORT_MESSAGE,
        remedy=WALLET_REMEDY,
    )


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
    # A zombie of an older run claim spends nothing either.
    ensure_current(provision_id)


def _keep_renewing(provision_id: int, client: ZapmailClient, names: Sequence[str]) -> None:
    # API-bought domains default to no auto-renew: without this a paying student's domains
    # would lapse after a year. One bulk call, only for the domains not yet switched on.
    with runtime.db() as session:
        rows = [
            row
            for row in ledger.domains_of(session, provision_id, names)
            if row.auto_renew is not True
        ]
        ids = [row.zapmail_domain_id for row in rows if row.zapmail_domain_id]
    if not ids:
        return
    # A run of a cancelled order (or a zombie) must not switch renewal back on.
    ensure_current(provision_id)
    client.set_auto_renew(ids, True)
    with runtime.db() as session:
        for row in ledger.domains_of(session, provision_id, names):
            row.auto_renew = True


def _workspace_id(provision_id: int) -> str:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None or not provision.zapmail_workspace_id:
            raise RuntimeError(f"provision {provision_id} has no Zapmail workspace yet")
        return provision.zapmail_workspace_id


def _reconcile(provision_id: int, client: ZapmailClient, names: Sequence[str]) -> set[str]:
    """List the workspace once and mark every named domain found there as purchased."""
    owned = {domain.domain.lower(): domain for domain in client.iter_domains(page_size=100)}
    found = set()
    with runtime.db() as session:
        for row in ledger.domains_of(session, provision_id, names):
            remote = owned.get(row.name)
            if remote is None:
                continue
            found.add(row.name)
            if row.purchase_state != PurchaseState.PURCHASED:
                row.purchase_state = PurchaseState.PURCHASED.value
                row.purchased_at = utcnow()
            row.zapmail_domain_id = remote.id
            row.status = remote.status
        ledger.resolve(session, provision_id, found, AttemptResolution.BOUGHT)
    return found


def _settle(provision_id: int, client: ZapmailClient, pending: list[str]) -> dict[str, int]:
    """Wait for domains with an intent to show up; decide what an absence means once settled.

    Returns name -> cents for the names proven not bought and still free (a fresh answer).
    """
    if not pending:
        return {}
    settle = timedelta(seconds=runtime.settings().purchase_settle_s)
    with runtime.db() as session:
        last_intent = max(
            row.intent_at or utcnow() for row in ledger.domains_of(session, provision_id, pending)
        )
    deadline = last_intent + settle
    while pending and utcnow() < deadline:
        time.sleep(min(SETTLE_POLL_S, max(0.0, (deadline - utcnow()).total_seconds())))
        _reconcile(provision_id, client, pending)
        pending = ledger.in_state(provision_id, pending, PurchaseState.INTENT)
    if not pending:
        return {}
    # Settled and still absent: nothing was charged (a taken name is refunded, an unpaid order
    # is dropped). Find out which, so we neither loop on a taken name nor give up on a free one.
    # The listing and this answer are both fresh: no cache decides a second buy.
    answers = _check(client, pending)
    taken = sorted(name for name in pending if not answers[name][0])
    if taken:
        ledger.abandon(provision_id, taken)
        raise ProvisioningBlockedError(
            f"domains taken before purchase completed: {taken}",
            student_message=(
                f"{', '.join(taken)} was registered by someone else before we could buy it. "
                "Nothing was charged for it; please pick another domain."
            ),
            remedy="another_domain",
        )
    # Free and not in our workspace after settling: proven not bought, so it may be bought again.
    ledger.resolve_not_bought(provision_id, pending)
    return {name: answers[name][1] or 0 for name in pending}


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


def _confirm_available(
    client: ZapmailClient, names: list[str], fresh: dict[str, int]
) -> dict[str, int]:
    """Return name -> price in cents, re-checking stale answers; stop if any name is taken.

    A name with an earlier purchase attempt is only bought again on an answer of this call
    (``fresh``, from settling) or a new check: a cached answer never allows a second buy.
    """
    fresh_after = utcnow() - timedelta(seconds=runtime.settings().availability_fresh_s)
    prices: dict[str, int] = {}
    stale = []
    with runtime.db() as session:
        checks = {
            c.name: c
            for c in session.scalars(select(DomainCheck).where(DomainCheck.name.in_(names)))
        }
        tried = set(
            session.scalars(
                select(PurchaseAttempt.domain_name).where(PurchaseAttempt.domain_name.in_(names))
            )
        )
        for name in names:
            check = checks.get(name)
            if name in tried:
                if fresh.get(name):
                    prices[name] = fresh[name]
                else:
                    stale.append(name)
            elif (
                check and check.available and check.price_cents and check.checked_at >= fresh_after
            ):
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


def _reserve(provision_id: int, client: ZapmailClient, prices: dict[str, int]) -> None:
    """Reserve the buy's price from the operator's wallet and record its attempts (committed).

    Under the account-wide wallet lock: the balance minus every unresolved attempt of every
    provision (money that may be charged any moment) must cover this buy. Conservative window:
    an attempt already charged but not yet resolved is counted twice (once in the balance, once
    as a reservation), which can only make a run wait, never spend what is not there.
    """
    needed = sum(prices.values())
    with wallet_lock():
        # Right before recording the intent: a cancelled order or a zombie run spends nothing.
        ensure_current(provision_id)
        balance = client.get_wallet_balance().wallet_balance
        cents = None if balance is None else _cents(balance)
        with runtime.db() as session:
            reserved = session.scalar(
                select(func.coalesce(func.sum(PurchaseAttempt.price_cents), 0)).where(
                    PurchaseAttempt.resolution.is_(None)
                )
            )
            detail = (
                f"Zapmail wallet balance {balance} USD, reserved by purchases in flight "
                f"{Decimal(reserved) / 100} USD, this buy needs {Decimal(needed) / 100} USD "
                f"({len(prices)} domains)"
            )
            if cents is None or cents < needed:
                # Short on its own: waiting for others would not help. The operator tops up.
                capacity.alert_wallet_stop(
                    provision_id,
                    balance_cents=cents,
                    reserved_cents=int(reserved or 0),
                    needed_cents=needed,
                )
                raise ProvisioningBlockedError(
                    f"{detail}: the wallet is short", student_message=WALLET_SHORT_MESSAGE,
                    remedy=WALLET_REMEDY,
                )  # fmt: skip
            if cents - reserved < needed:
                raise WalletBusyError(f"{detail}: waiting for the purchases in flight")
            ledger.record_attempts(session, provision_id, prices)


def resolve_orphaned_attempts(provision_id: int) -> dict[str, str]:
    """Settle the unresolved attempts of an order no run will come back to; buy nothing.

    A run killed after recording its attempts leaves them unresolved, and an unresolved attempt
    is a wallet reservation: on a cancelled or failed order nobody would ever release it, and
    other students' buys would wait on it. The caller (the watchdog) holds the provision's lock.
    Returns name -> resolution for the attempts it looked at.
    """
    with runtime.db() as session:
        names = sorted({a.domain_name for a in ledger.open_attempts_of(session, provision_id)})
    if not names:
        return {}
    client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
    _reconcile(provision_id, client, names)
    try:
        _settle(provision_id, client, ledger.in_state(provision_id, names, PurchaseState.INTENT))
    except ProvisioningBlockedError:
        pass  # taken by someone else: abandoned and resolved, nothing was charged
    with runtime.db() as session:
        latest = session.scalars(
            select(PurchaseAttempt)
            .where(
                PurchaseAttempt.provision_id == provision_id,
                PurchaseAttempt.domain_name.in_(names),
            )
            .order_by(PurchaseAttempt.attempt_no)
        )
        return {a.domain_name: a.resolution or "unresolved" for a in latest}
