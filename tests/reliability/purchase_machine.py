"""The purchase machine: buy attempts, faults, kills, concurrency and cancellation, in any order.

Rules start, retry, kill and race purchase attempts for paid provisions while the sandbox answers
the buy call (or the listing, or the wallet) with any fault, before or after performing it. After
every step: no domain is charged twice, nothing is charged for a provision after its
cancellation committed, and a domain the database calls purchased is in its workspace. At the
end of each example the faults are cleared and each live provision gets one clean run (with
retries); then every domain is bought exactly once or provably not charged.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import initialize
from hypothesis.stateful import invariant
from hypothesis.stateful import multiple
from hypothesis.stateful import precondition
from hypothesis.stateful import rule

from tests.reliability import figures
from tests.reliability.money_worker import KillableWorkers
from tests.reliability.money_worker import alive
from tests.reliability.money_world import BUY
from tests.reliability.money_world import LIST
from tests.reliability.money_world import RICH_WALLET
from tests.reliability.money_world import WALLET
from tests.reliability.money_world import PurchaseWorld

TABLE = "money_purchase"
MAX_PROVISIONS = 4
# A buy performed this long after the cancellation committed (sandbox clock) was sent after it:
# every request the machine has in flight at a commit is performed within milliseconds.
AFTER_CANCEL_SLACK_S = 0.25

# What the buy endpoint can do, before or after performing the purchase (issue 13's whole space).
REFUSALS = st.sampled_from(
    [{"kind": "status", "status": code} for code in (400, 402, 409, 422, 500, 502, 503)]
    + [{"kind": "rate_limit", "retry_after": 0}, {"kind": "timeout", "hold_s": 1.5}]
)
AFTER_EFFECT = st.builds(
    lambda status, body: (
        {"kind": "after_effect", "status": status} | ({} if body is None else {"body": body})
    ),
    status=st.sampled_from([200, 201, 202, 400, 402, 404, 409, 422, 429, 500, 502, 503, 504]),
    body=st.sampled_from([None, "<html>upstream garbled", "", '{"message": "ok"}', "null"]),
)
FAULTS = st.one_of(REFUSALS, AFTER_EFFECT, st.just({"kind": "drop_response", "hold_s": 1.5}))
# Where a fault lands: mostly the buy itself, sometimes the reads the protocol trusts.
FAULT_PATHS = st.sampled_from([BUY, BUY, BUY, LIST, WALLET])


def _method(path: str) -> str:
    return "POST" if path == BUY else "GET"


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class PurchaseMachine(RuleBasedStateMachine):
    """Rules over paid provisions' purchases; the world is set on a subclass by the test."""

    world: PurchaseWorld
    workers: KillableWorkers
    provisions = Bundle("provisions")

    def __init__(self) -> None:
        super().__init__()
        self.world.reset()
        self.names: dict[int, list[str]] = {}
        self.cost: dict[int, int] = {}
        # provision -> sandbox clock when its cancellation had committed
        self.cancelled_at: dict[int, float] = {}
        self._current: tuple[str, float] | None = None
        figures.add(TABLE, "examples", 1)

    def _step(self, name: str) -> None:
        self._close_step()
        figures.add(TABLE, "steps", 1)
        figures.add(TABLE, f"rule_{name}", 1)
        self._current = (name, time.monotonic())

    def _close_step(self) -> None:
        # Wall time per rule (with the invariants after it), to keep the short budget short.
        if self._current is not None:
            name, started = self._current
            figures.add(TABLE, f"ms_{name}", int((time.monotonic() - started) * 1000))
            self._current = None

    def _new(self) -> int:
        pid, names, cents = self.world.new_provision()
        self.names[pid], self.cost[pid] = names, cents
        return pid

    # --- rules ------------------------------------------------------------------------------

    @initialize(target=provisions)
    def first_provision(self) -> int:
        """Every example starts with one paid provision."""
        self._step("new_provision")
        return self._new()

    @precondition(lambda self: len(self.names) < MAX_PROVISIONS)
    @rule(target=provisions)
    def new_provision(self) -> int:
        """Another student pays."""
        self._step("new_provision")
        return self._new()

    @rule(fault=FAULTS, path=FAULT_PATHS, times=st.integers(1, 2))
    def inject_fault(self, fault: dict[str, Any], path: str, times: int) -> None:
        """The next call(s) to ``path`` meet this fault."""
        self._step("inject_fault")
        figures.add(TABLE, f"fault_{fault['kind']}", 1)
        self.world.sandbox.add_fault(
            vendor="zapmail", method=_method(path), path=path, times=times, **fault
        )

    @rule()
    def availability_goes_stale(self) -> None:
        """The wizard's cached availability answers age past freshness."""
        self._step("stale_cache")
        self.world.backdate_checks()

    @rule(p=provisions)
    def attempt(self, p: int) -> None:
        """One try of the purchase step (a first run, or a retry after any failure)."""
        self._step("attempt")
        self.world.attempt(p, self.names[p])

    @rule(p=provisions)
    def concurrent_attempts(self, p: int) -> None:
        """Two runs of the same provision's purchase at once (a duplicate run, a zombie)."""
        self._step("concurrent_attempts")
        threads = [
            threading.Thread(target=self.world.attempt, args=(p, self.names[p])) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a purchase attempt hung"

    @rule(p=provisions, after_send=st.booleans(), early_s=st.floats(0.0, 0.4))
    def killed_attempt(self, p: int, after_send: bool, early_s: float) -> None:
        """A worker is SIGKILLed: after its buy call reached Zapmail, or at an arbitrary moment."""
        self._step("killed_attempt")
        hold = self.world.sandbox.add_fault(
            vendor="zapmail", method="POST", path=BUY, kind="drop_response", hold_s=3, times=1
        )
        worker = self.workers.start(p, self.names[p])
        if after_send:
            deadline = time.monotonic() + 4.0
            while (
                self.world.fault_hits(hold["id"]) == 0
                and alive(worker)
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            time.sleep(0.05)  # the sandbox performed it on receipt; the answer is being held
        else:
            time.sleep(early_s)
        self.workers.kill(worker)
        figures.add(TABLE, "kills", 1)
        self.world.remove_fault(hold["id"])

    @rule(p=provisions)
    def cancel(self, p: int) -> None:
        """The student (or dunning, or an admin) cancels the order."""
        self._step("cancel")
        self._cancel(p)

    @rule(p=provisions, delay=st.floats(0.0, 0.6))
    def cancel_during_attempt(self, p: int, delay: float) -> None:
        """The cancellation commits while a run is between its checks and its buy call."""
        self._step("cancel_during_attempt")
        slow = self.world.sandbox.add_fault(
            vendor="zapmail", method="GET", path=WALLET, kind="latency", latency_ms=1200, times=1
        )
        run = threading.Thread(target=self.world.attempt, args=(p, self.names[p]))
        run.start()
        time.sleep(delay)
        self._cancel(p)
        run.join(timeout=120)
        assert not run.is_alive(), "a purchase attempt hung"
        self.world.remove_fault(slow["id"])

    @precondition(lambda self: len(self.names) <= MAX_PROVISIONS - 2)
    @rule(target=provisions)
    def cohort_burst(self) -> Any:
        """Two students' purchases at once against a wallet that covers only one of them."""
        self._step("cohort_burst")
        a, b = self._new(), self._new()
        self.world.set_wallet((max(self.cost[a], self.cost[b]) + 100) / 100)
        slow = self.world.sandbox.add_fault(
            vendor="zapmail", method="POST", path=BUY, kind="latency", latency_ms=600, times=1
        )
        threads = [
            threading.Thread(target=self.world.attempt, args=(pid, self.names[pid]))
            for pid in (a, b)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.world.remove_fault(slow["id"])
        self.world.set_wallet(RICH_WALLET)
        return multiple(a, b)

    def _cancel(self, p: int) -> None:
        if p in self.cancelled_at:
            self.world.cancel(p)  # asking again must change nothing
            return
        self.world.cancel(p)
        clock = self.world.sandbox.control("GET", "/clock").json()
        self.cancelled_at[p] = float(clock["timestamp"])

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def each_domain_charged_at_most_once(self) -> None:
        """No buy call charged a domain a second time."""
        bought, _net = self.world.charges()
        figures.record(
            TABLE,
            max_charges_per_domain=max(
                [
                    *bought.values(),
                    figures.snapshot().get(TABLE, {}).get("max_charges_per_domain", 0),
                ]
            ),
        )
        twice = {name: n for name, n in bought.items() if n > 1}
        assert not twice, f"charged more than once: {twice}"

    @invariant()
    def nothing_bought_after_cancellation(self) -> None:
        """Once a cancellation committed, no buy for that provision reaches Zapmail."""
        for p, at in self.cancelled_at.items():
            late = [
                e
                for e in self.world.ledger()
                if e["kind"] == "domain_purchase"
                and e["item"] in self.names[p]
                and _ts(e["at"]) > at + AFTER_CANCEL_SLACK_S
            ]
            assert not late, f"provision {p} bought after its cancellation: {late}"

    @invariant()
    def purchased_in_db_means_in_workspace(self) -> None:
        """A domain the database calls purchased is really in that provision's workspace."""
        held = self.world.workspace_names()
        for pid, name, state, workspace in self.world.db_domains():
            if state == "purchased":
                assert name in held.get(str(workspace), set()), (
                    f"{name} of provision {pid} is 'purchased' in the DB but not in its workspace"
                )

    def teardown(self) -> None:
        """Faults cleared, one clean run per live provision: bought once or provably not charged."""
        self._close_step()
        self._current = ("teardown", time.monotonic())
        world = self.world
        world.sandbox.clear_faults()
        world.set_wallet(RICH_WALLET)
        live = [p for p in self.names if p not in self.cancelled_at]
        for p in live:
            world.attempt_with_retries(p, self.names[p])
        bought, net = world.charges()
        states = {(pid, name): state for pid, name, state, _ws in world.db_domains()}
        unresolved = world.unresolved_attempts()
        held = set().union(*world.workspace_names().values())
        lost = 0
        for p, names in self.names.items():
            for name in names:
                state = states.get((p, name))
                assert bought[name] <= 1, f"{name} charged {bought[name]} times"
                if net[name] == 1:
                    # Charged: the DB knows, and (for a live order) it is bought and held.
                    assert state == "purchased" or (
                        p in self.cancelled_at and (state == "intent" or name in unresolved)
                    ), f"{name} (provision {p}) was charged but the DB says {state!r}"
                    if p not in self.cancelled_at:
                        assert name in held, f"{name} charged but not in any workspace"
                else:
                    assert state != "purchased", f"{name} is 'purchased' but was never charged"
                    if p not in self.cancelled_at:
                        lost += 1
        figures.add(TABLE, "domains", sum(len(n) for n in self.names.values()))
        figures.add(TABLE, "domains_bought_once", sum(1 for n in net.values() if n == 1))
        figures.add(TABLE, "live_domains_not_bought_after_clean_run", lost)
        figures.add(TABLE, "cancelled_provisions", len(self.cancelled_at))
        outcome_kinds = Counter(o.how for o in world.outcomes)
        for how, count in outcome_kinds.items():
            figures.add(TABLE, f"attempt_outcome_{how}", count)
        self._close_step()
