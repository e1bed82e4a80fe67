"""The purchase protocol against the sandbox, without Prefect: every answer is reconciled first.

``tasks.purchase.buy_domains`` is called directly (``runtime.use_prefect_limits(False)``: no
Prefect server), and a failure it calls retryable is called again, as Prefect's task retries
would. The sandbox performs the buy and then answers each status of issue 13 (or a 2xx body
that does not parse, or nothing in time); every cell must end with each domain charged exactly
once on the sandbox's wallet ledger and every purchase attempt resolved.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.zapmail import ZapmailResponseValidationError
from core.models import Domain
from core.models import DomainCheck
from core.models import Provision
from core.models import PurchaseAttempt
from core.models import PurchaseState
from core.settings import Settings
from tasks import purchase
from tasks import runtime
from tasks.errors import ProvisioningBlockedError
from tasks.guards import StaleRunError
from tasks.guards import remember_claim
from tasks.policies import is_transient
from tests.factories import make_paid_provision

BUY = "/v2/domains/buy"
# The answers of issue 13 after the effect: each must end charged exactly once.
AFTER_EFFECT = {
    "200-garbage": {"kind": "after_effect", "status": 200, "body": "<html>upstream garbled"},
    **{str(code): {"kind": "after_effect", "status": code} for code in (400, 402, 409, 422)},
    "429": {"kind": "after_effect", "status": 429},
    "500": {"kind": "after_effect", "status": 500},
    "504": {"kind": "after_effect", "status": 504},
    # Performed, then no answer within the client's 1 s timeout.
    "timeout": {"kind": "drop_response", "hold_s": 1.5},
}
# Refusals without the effect: the protocol must prove the absence, then buy once.
REFUSED = {
    "409-refused": {"kind": "status", "status": 409},
    "429-refused": {"kind": "rate_limit", "retry_after": 0},
}


@dataclass
class Money:
    """What a protocol test needs: the sandbox, a DB session, the settings in force."""

    sandbox: Any
    session: Session
    settings: Settings
    errors: list[BaseException] = field(default_factory=list)

    def provision(self, stem: str, count: int = 3) -> tuple[int, list[str]]:
        """A paid provision with ``count`` free names (cached as the wizard does) and a workspace."""
        candidates = [f"{stem}{i}.com" for i in range(20)]
        rows = httpx.post(
            f"{self.sandbox.zapmail_url}/v2/domains/available-bulk",
            json={"domainNames": candidates},
            headers={"x-auth-zapmail": "sandbox-zapmail-key"},
            timeout=10,
        ).json()["data"]["domains"]
        free = [row for row in rows if row["status"] == "AVAILABLE"][:count]
        names = [row["domainName"] for row in free]
        for row in free:
            # The wizard's cached answer: the second charge trusted exactly this.
            price = round(float(row["domainPrice"]) * 100)
            self.session.add(DomainCheck(name=row["domainName"], available=True, price_cents=price))
        row = make_paid_provision(self.session, email=f"{stem}@student.test", domains=names)
        workspace = runtime.zapmail().create_workspace(
            f"ws-{stem}", self.settings.zapmail_billing_details
        )
        row.zapmail_workspace_id = workspace.id
        self.session.commit()
        return row.id, names

    def buy(self, provision_id: int, names: list[str], tries: int = 6) -> dict[str, str]:
        """Call the protocol; call it again after a retryable failure, like Prefect's retries."""
        for attempt in range(tries):
            try:
                return purchase.buy_domains(provision_id, names, {})
            except Exception as exc:
                self.errors.append(exc)
                if not is_transient(exc) or attempt == tries - 1:
                    raise
                time.sleep(0.3)
        raise AssertionError("unreachable")

    def charges(self) -> Counter[str]:
        """How many times the sandbox charged each domain."""
        return Counter(e["item"] for e in self.sandbox.ledger(kind="domain_purchase"))

    def attempts(self, provision_id: int) -> list[PurchaseAttempt]:
        """The provision's purchase attempts, oldest first."""
        self.session.expire_all()
        query = (
            select(PurchaseAttempt)
            .where(PurchaseAttempt.provision_id == provision_id)
            .order_by(PurchaseAttempt.domain_name, PurchaseAttempt.attempt_no)
        )
        return list(self.session.scalars(query))

    def states(self, provision_id: int) -> dict[str, str]:
        """name -> purchase_state of the provision's domains."""
        self.session.expire_all()
        rows = self.session.scalars(select(Domain).where(Domain.provision_id == provision_id))
        return {row.name: row.purchase_state for row in rows}


@pytest.fixture
def money(sandbox: Any, session: Session, db_url: str, tmp_path: Path) -> Iterator[Money]:
    """Settings on the test DB and the sandbox, with no Prefect rate-limit slots."""
    sandbox.reset()
    sandbox.configure(rate_limits_enabled=False, domain_activation_s=1.0)
    settings = Settings(
        env="test",
        database_url=db_url,
        sandbox_url=sandbox.url,
        instance_dir=tmp_path,
        purchase_settle_s=1.0,
        vendor_timeout_s=1.0,
        _env_file=None,
    )
    runtime.use_settings(settings)
    runtime.use_prefect_limits(False)
    try:
        yield Money(sandbox=sandbox, session=session, settings=settings)
    finally:
        runtime.use_prefect_limits(True)
        runtime.use_settings(None)


def assert_bought_once(
    money: Money, provision_id: int, names: list[str], *, answered: bool = True
) -> None:
    """Each domain charged exactly once, purchased, and its attempts resolved (one bought)."""
    assert money.charges() == Counter(names), f"charged {money.charges()}"
    assert set(money.states(provision_id).values()) == {"purchased"}
    attempts = money.attempts(provision_id)
    assert attempts and all(a.resolution is not None for a in attempts), [
        (a.domain_name, a.outcome, a.resolution) for a in attempts
    ]
    bought = Counter(a.domain_name for a in attempts if a.resolution == "bought")
    assert bought == Counter(names)
    for a in attempts:
        assert a.price_cents > 0 and a.resolved_at is not None
        if answered:
            assert a.outcome != "sent" and a.answer, (a.domain_name, a.outcome, a.answer)
            assert "sandbox-zapmail-key" not in a.answer and "\n" not in a.answer


@pytest.mark.parametrize("cell", list(AFTER_EFFECT))
def test_an_answer_after_the_charge_is_reconciled_never_bought_again(
    money: Money, cell: str
) -> None:
    provision_id, names = money.provision(f"after{cell.replace('-', '')}")
    money.sandbox.add_fault(vendor="zapmail", method="POST", path=BUY, **AFTER_EFFECT[cell])

    ids = money.buy(provision_id, names)

    assert sorted(ids) == sorted(names)
    assert_bought_once(money, provision_id, names)
    attempts = money.attempts(provision_id)
    # One buy call: its answer was unknown, the listing proved the purchase.
    assert [a.outcome for a in attempts] == ["unknown"] * len(names)


@pytest.mark.parametrize("body", [None, '{"message": "ok"}', '{"data": {}}'])
def test_a_listing_that_answers_without_rows_never_turns_a_charge_into_taken(
    money: Money, body: str | None
) -> None:
    """Found by the purchase state machine: the buy's answer is lost, then the listing that
    should prove it answers 200 with no rows; the domain was marked "taken by someone else"."""
    provision_id, names = money.provision("listingrows")
    money.sandbox.add_fault(vendor="zapmail", method="POST", path=BUY, **AFTER_EFFECT["500"])
    fault = {"kind": "after_effect", "status": 200} | ({} if body is None else {"body": body})
    money.sandbox.add_fault(vendor="zapmail", method="GET", path="/v2/domains", **fault)

    # The run stops on an answer it cannot read, deciding nothing about the charge.
    with pytest.raises(ZapmailResponseValidationError):
        money.buy(provision_id, names)
    money.session.expire_all()
    states = money.session.scalars(
        select(Domain.purchase_state).where(Domain.provision_id == provision_id)
    ).all()
    assert (
        PurchaseState.ABANDONED.value not in states and PurchaseState.PURCHASED.value not in states
    )
    # The retry, once the listing answers properly, finds the purchase: charged once, not again.
    money.sandbox.clear_faults()
    money.buy(provision_id, names)
    assert_bought_once(money, provision_id, names)


@pytest.mark.parametrize("cell", list(REFUSED))
def test_a_refusal_without_the_charge_is_proven_absent_then_bought_once(
    money: Money, cell: str
) -> None:
    provision_id, names = money.provision(f"refused{cell.replace('-', '')}")
    money.sandbox.add_fault(vendor="zapmail", method="POST", path=BUY, **REFUSED[cell])

    money.buy(provision_id, names)

    assert_bought_once(money, provision_id, names)
    attempts = money.attempts(provision_id)
    # First call: unknown, settled absent and free -> not_bought; the second call bought them.
    assert [
        (a.attempt_no, a.outcome, a.resolution) for a in attempts if a.domain_name == names[0]
    ] == [
        (1, "unknown", "not_bought"),
        (2, "accepted", "bought"),
    ]


def test_a_purchase_with_no_fault_is_one_accepted_attempt_per_domain(money: Money) -> None:
    provision_id, names = money.provision("plain")
    money.buy(provision_id, names)
    assert_bought_once(money, provision_id, names)
    assert {(a.attempt_no, a.outcome) for a in money.attempts(provision_id)} == {(1, "accepted")}
    # A second call (a rerun of the step) lists, finds them bought, and spends nothing.
    money.buy(provision_id, names)
    assert money.charges() == Counter(names)


def test_an_unresolved_attempt_of_a_dead_worker_is_reconciled_before_any_spend(
    money: Money,
) -> None:
    # A worker died between recording its attempts and hearing the answer, after the charge.
    provision_id, names = money.provision("deadworker")
    prices = {n: 1299 for n in names}
    purchase._reserve(provision_id, runtime.zapmail(), prices)
    workspace = money.session.get(Provision, provision_id).zapmail_workspace_id
    runtime.zapmail().for_workspace(workspace).buy_domains(names)
    assert {a.outcome for a in money.attempts(provision_id)} == {"sent"}

    money.buy(provision_id, names)

    # No answer was ever heard for that call ("sent"), yet the listing resolved it: bought.
    assert_bought_once(money, provision_id, names, answered=False)
    routes = money.sandbox.stats()["vendors"]["zapmail"]["routes"]
    assert sum(routes[f"POST {BUY}"].values()) == 1


def test_a_short_wallet_invoice_stops_for_good_with_nothing_charged(money: Money) -> None:
    provision_id, names = money.provision("invoice")
    # The wallet holds $1, but the balance endpoint is answered with a large one: the buy is
    # then met by Zapmail's short-wallet answer (a 2xx with an invoice, nothing registered).
    set_wallet(money, 1.0)
    money.sandbox.add_fault(
        vendor="zapmail",
        method="GET",
        path="/v2/wallet/balance",
        kind="after_effect",
        status=200,
        body='{"walletBalance": 10000.0}',
        times=None,
    )

    with pytest.raises(ProvisioningBlockedError) as info:
        money.buy(provision_id, names)

    assert "invoice" in str(info.value).lower() and info.value.remedy == "wallet"
    assert "Nothing has been bought or charged" in info.value.student_message
    assert money.charges() == Counter()
    assert set(money.states(provision_id).values()) == {"selected"}
    assert {(a.outcome, a.resolution) for a in money.attempts(provision_id)} == {
        ("accepted", "not_bought")
    }
    # One buy call only: the short answer is not looped on.
    routes = money.sandbox.stats()["vendors"]["zapmail"]["routes"]
    assert sum(routes[f"POST {BUY}"].values()) == 1


def test_two_provisions_sharing_a_wallet_that_covers_one_buy_only_what_it_covers(
    money: Money,
) -> None:
    first, first_names = money.provision("walletone")
    second, second_names = money.provision("wallettwo")
    checks = money.session.scalars(
        select(DomainCheck).where(DomainCheck.name.in_(first_names + second_names))
    )
    prices = {c.name: c.price_cents for c in checks}
    need = max(sum(prices[n] for n in first_names), sum(prices[n] for n in second_names))
    # Either provision fits alone, both together do not.
    set_wallet(money, (need + 100) / 100)
    # The first buy call is slow (2 s, inside the client's timeout and the settle window, so
    # its answer is heard), and the second run meets its reservation meanwhile.
    money.settings.vendor_timeout_s = 5.0
    money.settings.purchase_settle_s = 5.0
    runtime.use_settings(money.settings)
    money.sandbox.add_fault(
        vendor="zapmail", method="POST", path=BUY, kind="latency", latency_ms=2000
    )
    results: dict[int, Any] = {}

    def run(pid: int, names: list[str]) -> None:
        try:
            results[pid] = money.buy(pid, names, tries=8)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[pid] = exc

    one = threading.Thread(target=run, args=(first, first_names))
    one.start()
    _wait_for(lambda: bool(money.attempts(first)))
    two = threading.Thread(target=run, args=(second, second_names))
    two.start()
    one.join(timeout=120)
    two.join(timeout=120)

    assert isinstance(results[first], dict), results[first]
    assert money.charges() == Counter(first_names), "only what the wallet covers, once each"
    stopped = results[second]
    assert isinstance(stopped, ProvisioningBlockedError), stopped
    assert "wallet" in str(stopped).lower()
    assert "Nothing has been bought or charged" in stopped.student_message
    # It waited for the first run's reservation before it knew the wallet was short on its own.
    assert any(isinstance(e, purchase.WalletBusyError) for e in money.errors)
    assert money.attempts(second) == []
    assert set(money.states(second).values()) == {"selected"}


def test_a_superseded_run_spends_nothing_and_re_enables_nothing(money: Money) -> None:
    provision_id, names = money.provision("stale")
    money.session.get(Provision, provision_id).run_epoch = 2
    money.session.commit()
    remember_claim(provision_id, 1)  # this process's run claimed epoch 1; a newer run holds 2
    try:
        with pytest.raises(StaleRunError):
            purchase.buy_domains(provision_id, names, {})
        assert money.charges() == Counter() and money.attempts(provision_id) == []
        # Bought by the current run; a zombie rerun must not switch auto-renew back on.
        remember_claim(provision_id, 2)
        money.buy(provision_id, names)
        for row in money.session.scalars(select(Domain).where(Domain.provision_id == provision_id)):
            row.auto_renew = False
        money.session.commit()
        remember_claim(provision_id, 1)
        with pytest.raises(StaleRunError):
            purchase.buy_domains(provision_id, names, {})
        routes = money.sandbox.stats()["vendors"]["zapmail"]["routes"]
        assert sum(routes["POST /v2/domains/update-auto-renew"].values()) == 1
        assert money.charges() == Counter(names)
    finally:
        remember_claim(provision_id, 0)


def set_wallet(money: Money, balance: float) -> None:
    """Set the sandbox's Zapmail wallet balance (and check the client sees it)."""
    money.sandbox.control("POST", "/zapmail/wallet", json={"balance": balance}).raise_for_status()
    seen = runtime.zapmail().get_wallet_balance().wallet_balance
    assert float(seen or 0) == pytest.approx(balance), (seen, money.sandbox.url)


def _swallow(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the killed run's outcome does not matter
        pass


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize(("spends", "sent"), [(True, 1), (False, 2)])
def test_the_throttled_transport_never_resends_a_spending_request_on_429(
    spends: bool, sent: int
) -> None:
    from clients._http import SPENDS_MONEY
    from tasks.limits import ThrottledTransport
    from tasks.limits import no_slot

    calls: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"retry-after": "0"}, json={"status": 429})
        return httpx.Response(200, json={"message": "Domains purchased"})

    transport = ThrottledTransport(lambda _r: ["zapmail"], httpx.MockTransport(vendor), no_slot)
    with httpx.Client(transport=transport, base_url="http://zapmail.test") as client:
        extensions = {SPENDS_MONEY: True} if spends else None
        response = client.post("/v2/domains/buy", json={}, extensions=extensions)
    assert len(calls) == sent
    assert response.status_code == (429 if spends else 200)


def test_orphaned_attempts_of_a_cancelled_order_are_settled_and_stop_reserving_the_wallet(
    money: Money,
) -> None:
    # A run was killed after recording its attempts; the order was then cancelled, so no run
    # comes back to reconcile them. One buy went through at the vendor, the other never left.
    charged_id, charged = money.provision("orphancharged", count=2)
    lost_id, lost = money.provision("orphanlost", count=2)
    for provision_id, names in ((charged_id, charged), (lost_id, lost)):
        purchase._reserve(provision_id, runtime.zapmail(), {n: 1299 for n in names})
    workspace = money.session.get(Provision, charged_id).zapmail_workspace_id
    runtime.zapmail().for_workspace(workspace).buy_domains(charged)
    for provision_id in (charged_id, lost_id):
        money.session.get(Provision, provision_id).status = "cancelled"
    money.session.commit()
    time.sleep(money.settings.purchase_settle_s)  # both are older than the settle window

    assert purchase.resolve_orphaned_attempts(charged_id) == dict.fromkeys(charged, "bought")
    assert purchase.resolve_orphaned_attempts(lost_id) == dict.fromkeys(lost, "not_bought")

    assert money.charges() == Counter(charged)  # settling bought nothing
    money.session.expire_all()
    open_rows = money.session.scalars(
        select(PurchaseAttempt).where(PurchaseAttempt.resolution.is_(None))
    ).all()
    assert open_rows == []  # no reservation is left holding the operator's wallet
    assert purchase.resolve_orphaned_attempts(lost_id) == {}
