"""The fulfilment machine: orders, payments and Stripe's events in any order, against the portal.

Students order through the wizard, change their order and pay again, pay old sessions and pay
twice; Stripe's events arrive late, twice or out of order; a correctly signed but forged event
claims a payment, or a cancellation or recovery of a real subscription; orders are cancelled,
renewals fail, subscriptions are deleted; the outbox is drained at any point. After every step:
nothing is started for an order that is not paid, at most one start per order, what is started
is exactly the paid snapshot, a cancelled order stays cancelled, and an order is cancelled only
by us or because Stripe ended its subscription. At the end every event is delivered and every effect performed; then every
paid checkout has either exactly one start or a refund, and nothing bills at Stripe for an order
that is cancelled or refunded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import initialize
from hypothesis.stateful import invariant
from hypothesis.stateful import multiple
from hypothesis.stateful import precondition
from hypothesis.stateful import rule

from core.models import OrderStatus
from core.models import ProvisionStatus
from tests.reliability import figures
from tests.reliability.money_orders import OrderWorld
from tests.reliability.money_orders import Student

TABLE = "money_fulfilment"
MAX_STUDENTS = 3
MAX_SESSIONS = 5
BILLING = {"active", "past_due", "unpaid", "trialing", "paused"}
INDEX = st.integers(0, 50)
TIERS = st.sampled_from(["starter", "growth"])
METHODS = st.sampled_from(["card", "card", "card", "bank_debit"])
FORGED = st.sampled_from(["canceled", "incomplete_expired", "unpaid", "active"])
ENDED = {"canceled", "incomplete_expired"}


class FulfilmentMachine(RuleBasedStateMachine):
    """Rules over students' orders and Stripe's events; the world is set on a subclass."""

    world: OrderWorld
    students = Bundle("students")
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.world.reset()
        self.all_students: list[Student] = []
        self.cancelled: set[int] = set()
        self.owner: dict[str, Student] = {}
        self._current: tuple[str, float] | None = None
        figures.add(TABLE, "examples", 1)

    def _step(self, name: str) -> None:
        self._close_step()
        figures.add(TABLE, "steps", 1)
        figures.add(TABLE, f"rule_{name}", 1)
        self._current = (name, time.monotonic())

    def _close_step(self) -> None:
        if self._current is not None:
            name, started = self._current
            figures.add(TABLE, f"ms_{name}", int((time.monotonic() - started) * 1000))
            self._current = None

    def _new_student(self) -> Student:
        student = self.world.new_student()
        self.all_students.append(student)
        return student

    # --- rules ------------------------------------------------------------------------------

    @initialize(target=students)
    def first_student(self) -> Student:
        """Every example starts with one signed-in student."""
        self._step("new_student")
        return self._new_student()

    @precondition(lambda self: len(self.all_students) < MAX_STUDENTS)
    @rule(target=students)
    def new_student(self) -> Student:
        """Another student signs in."""
        self._step("new_student")
        return self._new_student()

    def _order(self, student: Student, tier: str, brand: int) -> str | None:
        session_id = self.world.order(student, tier, f"acme{brand % 7}")
        if session_id is not None:
            self.owner[session_id] = student
        return session_id

    def _sessions_left(self) -> bool:
        return len(self.owner) < MAX_SESSIONS

    @precondition(_sessions_left)
    @rule(target=sessions, student=students, tier=TIERS, brand=INDEX)
    def order_and_open_checkout(self, student: Student, tier: str, brand: int) -> Any:
        """Wizard then Pay: a new Checkout Session (again: the order changed, the old one stays)."""
        self._step("order")
        session_id = self._order(student, tier, brand)
        return multiple() if session_id is None else session_id

    @precondition(_sessions_left)
    @rule(target=sessions, student=students, tier=TIERS, brand=INDEX, method=METHODS)
    def order_and_pay(self, student: Student, tier: str, brand: int, method: str) -> Any:
        """Wizard, Pay, and the payment on Stripe's page, in one go."""
        self._step("order_and_pay")
        session_id = self._order(student, tier, brand)
        if session_id is None:
            return multiple()
        self.world.pay(session_id, method)
        return session_id

    @precondition(_sessions_left)
    @rule(target=sessions, student=students, tiers=st.tuples(TIERS, TIERS), brand=INDEX)
    def second_tab(self, student: Student, tiers: tuple[str, str], brand: int) -> Any:
        """Two checkout pages open (the order changed in between), both paid, older first."""
        self._step("second_tab")
        first = self._order(student, tiers[0], brand)
        second = self._order(student, tiers[1], brand + 1)
        opened = [s for s in (first, second) if s is not None]
        for session_id in opened:
            self.world.pay(session_id, "card")
        return multiple(*opened)

    @rule(session=sessions, method=METHODS)
    def pay(self, session: str, method: str) -> None:
        """A session is paid (the latest, an old tab, or one already paid)."""
        self._step("pay")
        self.world.pay(session, method)

    @rule(session=sessions, succeeded=st.booleans())
    def bank_debit_settles(self, session: str, succeeded: bool) -> None:
        """A delayed payment clears or fails."""
        self._step("bank_debit_settles")
        self.world.settle_bank_debit(session, succeeded)

    @rule(session=sessions)
    def back_on_success_page(self, session: str) -> None:
        """The browser comes back from Checkout (the success page also fulfils)."""
        self._step("success_page")
        self.world.success_page(self.owner[session], session)

    @rule(which=INDEX)
    def stripe_delivers(self, which: int) -> None:
        """Stripe delivers one of its pending events: any one, so late and out of order."""
        self._step("deliver")
        self.world.deliver(which)

    @rule(which=INDEX)
    def stripe_redelivers(self, which: int) -> None:
        """Stripe delivers an event a second time."""
        self._step("redeliver")
        self.world.redeliver(which)

    @rule(student=students, async_kind=st.booleans())
    def forged_paid_event(self, student: Student, async_kind: bool) -> None:
        """A correctly signed event says an unknown session paid for this student's order."""
        provision_id = self.world.provision_of(student)
        self._step("forged_event")
        session_id = f"cs_test_forged{uuid.uuid4().hex[:16]}"
        kind = (
            "checkout.session.async_payment_succeeded"
            if async_kind
            else "checkout.session.completed"
        )
        event = {
            "id": f"evt_forged{uuid.uuid4().hex[:20]}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "data": {
                "object": {
                    "id": session_id,
                    "object": "checkout.session",
                    "mode": "subscription",
                    "status": "complete",
                    "payment_status": "paid",
                    "amount_total": 14400,
                    "currency": "usd",
                    "client_reference_id": str(provision_id),
                    "customer": "cus_forged",
                    "subscription": "sub_forged",
                    "metadata": {
                        "provision_id": str(provision_id),
                        "user_id": str(student.user_id),
                        "kind": "provision",
                    },
                }
            },
        }
        self.world.post_event(event)

    @rule(student=students, kind=st.sampled_from(["deleted", "updated"]), status=FORGED)
    def forged_subscription_event(self, student: Student, kind: str, status: str) -> None:
        """A correctly signed body claims the student's real subscription ended or changed."""
        provision_id = self.world.provision_of(student)
        subscription = next(
            (p.stripe_subscription_id for p in self.world.provisions() if p.id == provision_id),
            None,
        )
        if not subscription:
            return
        self._step("forged_subscription")
        obj = {
            "id": subscription,
            "object": "subscription",
            "status": status,
            "metadata": {"provision_id": str(provision_id), "user_id": str(student.user_id)},
        }
        self.world.post_event(
            {
                "id": f"evt_forged{uuid.uuid4().hex[:20]}",
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": int(time.time()) + 1,
                "type": f"customer.subscription.{kind}",
                "livemode": False,
                "data": {"object": obj},
            }
        )

    @rule(student=students)
    def cancel_order(self, student: Student) -> None:
        """The order is cancelled (student, admin or dunning: core.cancellation)."""
        provision_id = self.world.provision_of(student)
        if provision_id is None:
            return
        self._step("cancel")
        self.world.cancel(provision_id)
        self.cancelled.add(provision_id)

    @rule(student=students, deleted=st.booleans())
    def subscription_goes_unpaid_or_deleted(self, student: Student, deleted: bool) -> None:
        """A renewal is declined, or the student cancels the subscription in Stripe's portal."""
        provision_id = self.world.provision_of(student)
        if provision_id is None:
            return
        subscription = next(
            (p.stripe_subscription_id for p in self.world.provisions() if p.id == provision_id),
            None,
        )
        if not subscription:
            return
        self._step("subscription_deleted" if deleted else "renewal_fails")
        if deleted:
            self.world.subscription_deleted(subscription)
        else:
            self.world.renewal_fails(subscription)

    @rule()
    def outbox_drained(self) -> None:
        """The sender runs: starts, refunds and stop-billing effects happen now."""
        self._step("drain")
        self.world.drain()

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def nothing_started_unless_paid_as_snapshotted(self) -> None:
        """A start exists only for an order whose paid snapshot matches Stripe and the order."""
        world = self.world
        starts = world.start_rows()
        per_provision = Counter(int(p["provision_id"]) for _key, p in starts)
        twice = {pid: n for pid, n in per_provision.items() if n > 1}
        assert not twice, f"more than one provisioning start: {twice} ({starts})"
        provisions = {p.id: p for p in world.provisions()}
        snapshots = world.snapshots()
        for pid in per_provision:
            provision = provisions[pid]
            assert provision.status != ProvisionStatus.PENDING_PAYMENT.value, (
                f"provision {pid} started while pending payment"
            )
            paid = [s for s in snapshots if s.provision_id == pid and s.status == "paid"]
            assert len(paid) == 1, f"provision {pid} started with paid snapshots {paid}"
            snap = paid[0]
            session = world.checkout(str(snap.checkout_session_id))
            assert session.payment_status == "paid", (
                f"provision {pid} started for session {session.id} that Stripe has unpaid"
            )
            assert session.amount_total == snap.setup_cents + snap.monthly_cents
            assert provision.tier_id == snap.tier_id, f"provision {pid}: tier differs from paid"
            assert world.domains_of(pid) == set(snap.domains), (
                f"provision {pid}: domains {sorted(world.domains_of(pid))} "
                f"differ from the paid snapshot {sorted(snap.domains)}"
            )

    @invariant()
    def cancelled_stays_cancelled(self) -> None:
        """A cancelled order never moves again."""
        statuses = {p.id: p.status for p in self.world.provisions()}
        for pid in self.cancelled:
            assert statuses.get(pid) == ProvisionStatus.CANCELLED.value, (
                f"provision {pid} left cancelled: {statuses.get(pid)}"
            )

    @invariant()
    def cancelled_only_by_us_or_by_stripe(self) -> None:
        """An order we did not cancel is cancelled only if Stripe ended its subscription."""
        for provision in self.world.provisions():
            if (
                provision.status != ProvisionStatus.CANCELLED.value
                or provision.id in self.cancelled
            ):
                continue
            status = self.world.subscription_status(provision.stripe_subscription_id)
            assert status in ENDED, (
                f"provision {provision.id} cancelled while Stripe has its subscription {status}"
            )

    # --- the end ----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Every event delivered, every effect run: each paid checkout started once or refunded."""
        self._close_step()
        self._current = ("teardown", time.monotonic())
        world = self.world
        for _ in range(4):
            world.deliver_all()
            world.drain()
            world.fetch_events()
            if not world.pending_events:
                break
        starts = world.start_rows()
        started = {int(p["provision_id"]) for _key, p in starts}
        snapshots = {s.checkout_session_id: s for s in world.snapshots()}
        provisions = {p.id: p for p in world.provisions()}
        orphans, double, refunded, fulfilled = [], [], 0, 0
        for session in world.paid_sessions():
            snap = snapshots.get(session.id)
            won = (
                snap is not None
                and snap.status == OrderStatus.PAID.value
                and snap.provision_id in started
            )
            back = world.refunded(session)
            if won and back:
                double.append(session.id)
            elif won:
                fulfilled += 1
            elif back:
                refunded += 1
                status = world.subscription_status(session.subscription)
                assert status not in BILLING, (
                    f"refunded session {session.id} still bills: subscription {status}"
                )
            else:
                orphans.append((session.id, snap.status if snap else None))
        lost = [
            pid
            for pid, p in provisions.items()
            if p.status == ProvisionStatus.PROVISIONING.value and pid not in started
        ]
        still_billing = [
            (pid, p.stripe_subscription_id)
            for pid, p in provisions.items()
            if p.status == ProvisionStatus.CANCELLED.value
            and world.subscription_status(p.stripe_subscription_id) in BILLING
        ]
        live_subscriptions = {
            p.stripe_subscription_id
            for pid, p in provisions.items()
            if pid in started and p.status != ProvisionStatus.CANCELLED.value
        }
        stray = [
            s.id
            for s in world.stripe().v1.subscriptions.list({"limit": 100, "status": "all"}).data
            if s.status in BILLING and s.id not in live_subscriptions
        ]
        figures.add(TABLE, "paid_checkouts", fulfilled + refunded + len(orphans) + len(double))
        figures.add(TABLE, "paid_checkouts_started_once", fulfilled)
        figures.add(TABLE, "paid_checkouts_refunded", refunded)
        figures.add(TABLE, "orphans", len(orphans))
        figures.add(TABLE, "started_and_refunded", len(double))
        figures.add(TABLE, "lost_orders", len(lost))
        figures.add(TABLE, "cancelled_orders_still_billing", len(still_billing) + len(stray))
        figures.add(TABLE, "cancelled_orders", len(self.cancelled))
        errors = json.dumps(world.effect_errors[-5:])
        self._close_step()
        assert not double, f"paid sessions both started and refunded: {double}"
        assert not orphans, f"paid sessions with neither a start nor a refund: {orphans} {errors}"
        assert not lost, f"paid orders without a start: {lost} {errors}"
        assert not still_billing, f"cancelled orders still billing: {still_billing} {errors}"
        assert not stray, f"subscriptions billing for no live order: {stray} {errors}"
