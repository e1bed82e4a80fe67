"""Stripe simulator: a stateful fake of Stripe's API (version 2026-10-28.endive) with a hosted
Checkout page, a billing portal and signed webhook delivery. See docs/sandbox-stripe.md."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from sandbox.vendors.stripe import api
from sandbox.vendors.stripe import control
from sandbox.vendors.stripe import invoice_pages
from sandbox.vendors.stripe import pages
from sandbox.vendors.stripe import subscriptions
from sandbox.vendors.stripe.errors import error_body
from sandbox.vendors.stripe.scheduler import Scheduler
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.webhooks import Dispatcher


class StripeSim:
    """Stripe simulator: `app` is mounted at /stripe, `control_app` at /_sandbox/stripe."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.state = State(ctx)
        self.state.invoice_hooks.append(subscriptions.on_invoice)
        self.dispatcher = Dispatcher(self.state)
        self.state.on_flush = self.dispatcher.enqueue_batch
        self.scheduler = Scheduler(self.state)
        self.app = Starlette(
            routes=[
                *api.routes(self.state),
                *pages.routes(self.state),
                *invoice_pages.routes(self.state),
            ]
        )
        self.control_app = control.build(self.state, self.dispatcher)
        ctx.register_vendor("stripe", error_body)
        ctx.on_reset(self.reset)

    async def startup(self) -> None:
        """Start the webhook delivery worker and the billing clock."""
        await self.dispatcher.start()
        self.scheduler.start()

    async def shutdown(self) -> None:
        """Stop the background tasks and close the webhook HTTP client."""
        await self.scheduler.stop()
        await self.dispatcher.stop()

    def reset(self) -> None:
        """Forget every object, event, idempotency key and queued delivery."""
        self.state.reset()
        self.dispatcher.reset()
