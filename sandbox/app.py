"""Assemble the sandbox ASGI app: vendor mounts behind the vendor gate, plus /_sandbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from sandbox.context import SandboxContext
from sandbox.control import build_control_app
from sandbox.faults import FaultStore
from sandbox.faults import Stats
from sandbox.faults import VendorGate
from sandbox.vendors.heyreach import HeyReachSim
from sandbox.vendors.plusvibe import PlusVibeSim
from sandbox.vendors.stripe import StripeSim
from sandbox.vendors.zapmail import ZapmailSim

ZAPMAIL_PREFIX = "/zapmail/api"
PLUSVIBE_PREFIX = "/plusvibe/api/v1"
HEYREACH_PREFIX = "/heyreach/api/public"
STRIPE_PREFIX = "/stripe"


def build_app(ctx: SandboxContext) -> Starlette:
    """Build the whole sandbox app around one shared context."""
    plusvibe = PlusVibeSim(ctx)
    zapmail = ZapmailSim(ctx, plusvibe=plusvibe)
    heyreach = HeyReachSim(ctx)
    stripe = StripeSim(ctx)
    mounts = {
        ZAPMAIL_PREFIX: ("zapmail", zapmail.app),
        PLUSVIBE_PREFIX: ("plusvibe", plusvibe.app),
        HEYREACH_PREFIX: ("heyreach", heyreach.app),
        STRIPE_PREFIX: ("stripe", stripe.app),
    }
    faults = FaultStore({vendor for vendor, _ in mounts.values()})
    stats = Stats()
    ctx.on_reset(faults.clear)
    ctx.on_reset(stats.clear)
    control = build_control_app(
        ctx, faults=faults, stats=stats, zapmail=zapmail, plusvibe=plusvibe, heyreach=heyreach
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await stripe.startup()
        zapmail.start()
        try:
            yield
        finally:
            await zapmail.stop()
            await stripe.shutdown()

    routes = [Mount(prefix, app=app) for prefix, (_, app) in mounts.items()]
    # Stripe's own control endpoints first: /_sandbox would otherwise swallow them.
    routes += [Mount("/_sandbox/stripe", app=stripe.control_app), Mount("/_sandbox", app=control)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(VendorGate, ctx=ctx, mounts=mounts, faults=faults, stats=stats)],
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    return app
