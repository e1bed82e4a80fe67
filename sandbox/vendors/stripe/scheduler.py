"""Billing clock: expires sessions, settles bank debits, renews or ends subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sandbox.vendors.stripe import checkout
from sandbox.vendors.stripe import invoices
from sandbox.vendors.stripe import subscriptions
from sandbox.vendors.stripe.store import State

log = logging.getLogger(__name__)

TICK_S = 0.25
AUTO_FINALIZE_AFTER_S = 3600  # Stripe finalizes auto_advance drafts about an hour after creation
MAX_RENEWALS_PER_TICK = 24  # a huge clock jump must not freeze the event loop


def tick(state: State) -> None:
    """Run everything that is due at the current simulated time."""
    now = state.now()
    for session in state.all("checkout.session"):
        if session["status"] == "open" and session["expires_at"] <= now:
            checkout.expire(state, session)
        due = session.get("_async_due")
        if due is not None and due <= now:
            checkout.settle_async(state, session, state.async_payment_outcome == "succeeded")
    for sub in state.all("subscription"):
        _tick_subscription(state, sub, now)
    for invoice in state.all("invoice", lambda i: i["status"] == "draft" and i["auto_advance"]):
        if invoice["created"] + AUTO_FINALIZE_AFTER_S <= now:
            invoices.finalize(state, invoice)
            if invoice["status"] == "open":
                invoices.attempt_payment(state, invoice)
    state.flush()


def _tick_subscription(state: State, sub: dict, now: int) -> None:
    pending = sub.get("pending_update")
    if pending and pending["expires_at"] <= now:
        before = state.snapshot(sub)
        sub["pending_update"] = None
        sub.pop("_pending_change", None)
        state.emit("customer.subscription.updated", sub, before)
    if sub["cancel_at"] and sub["cancel_at"] <= now and sub["status"] not in subscriptions.ENDED:
        subscriptions.cancel(state, sub, at=sub["cancel_at"])
        return
    for _ in range(MAX_RENEWALS_PER_TICK):
        if sub["status"] in subscriptions.ENDED or sub["status"] == "incomplete":
            return
        if subscriptions.period(sub)[1] > now:
            return
        subscriptions.renew(state, sub)


class Scheduler:
    """Runs tick() every TICK_S wall seconds in the background."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking."""
        self._task = asyncio.create_task(self._run(), name="stripe-scheduler")

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                tick(self.state)
            except Exception:  # keep the clock running even if one object trips a bug
                log.exception("Stripe scheduler tick failed")
                self.state.outbox.clear()
