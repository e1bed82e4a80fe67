"""Test helpers under /_sandbox/stripe: deliveries log, redelivery, payment outcomes, renewals."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.vendors.stripe import checkout
from sandbox.vendors.stripe import disputes
from sandbox.vendors.stripe import subscriptions
from sandbox.vendors.stripe.errors import StripeError
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.webhooks import Dispatcher


class ControlError(Exception):
    """A helper request that cannot be served; answered as {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Parse a JSON object body ({} when empty and not required)."""
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ControlError(400, "Request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError(400, "Request body must be a JSON object")
    return data


def _guard(state: State, fn: Callable[[Request], Awaitable[Any]]):
    async def endpoint(request: Request) -> JSONResponse:
        try:
            result = await fn(request)
        except ControlError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        finally:
            state.flush()
        return JSONResponse(result)

    return endpoint


def build(state: State, dispatcher: Dispatcher) -> Starlette:
    """Return the control app (mounted at /_sandbox/stripe)."""

    def session_of(request: Request) -> dict[str, Any]:
        session = state.find(request.path_params["session_id"], "checkout.session")
        if session is None:
            raise ControlError(404, "No such checkout session")
        return session

    async def deliveries(request: Request) -> dict[str, Any]:
        """GET /deliveries[?pending=true][&event_id=][&type=]: every delivery attempt."""
        query = request.query_params
        if query.get("pending") == "true":
            return {"pending": dispatcher.pending()}
        rows = [
            row
            for row in dispatcher.log
            if (not query.get("event_id") or row["event_id"] == query["event_id"])
            and (not query.get("type") or row["type"] == query["type"])
        ]
        return {"deliveries": rows, "pending": dispatcher.pending()}

    async def redeliver(request: Request) -> dict[str, Any]:
        """POST /redeliver {"event_id"}: queue one more delivery."""
        body = await json_body(request)
        if not dispatcher.redeliver(str(body.get("event_id"))):
            raise ControlError(404, "No such event")
        return {"queued": True}

    async def drain(request: Request) -> dict[str, Any]:
        """POST /drain {"timeout_s": 10}: wait until no delivery is pending."""
        body = await json_body(request, required=False)
        drained = await dispatcher.drain(float(body.get("timeout_s", 10)))
        return {"drained": drained, "pending": dispatcher.pending()}

    async def list_events(request: Request) -> dict[str, Any]:
        """GET /events[?type=]: every event, oldest first."""
        kind = request.query_params.get("type")
        found = [state.render(e) for e in reversed(state.all("event"))]
        return {"events": [e for e in found if not kind or e["type"] == kind]}

    async def complete(request: Request) -> dict[str, Any]:
        """POST /checkout/{id}/complete {"method": card|bank_debit|decline, "email"?}."""
        session = session_of(request)
        body = await json_body(request, required=False)
        method = body.get("method", "card")
        if method not in ("card", "bank_debit", "decline"):
            raise ControlError(400, "method must be card, bank_debit or decline")
        if session["status"] != "open":
            raise ControlError(409, f"Checkout Session is {session['status']}")
        if method == "decline":
            session["_declines"] += 1
        else:
            checkout.complete(
                state, session, method=method, email=body.get("email"), name=body.get("name")
            )
        return state.render(session)

    async def async_payment(request: Request) -> dict[str, Any]:
        """POST /checkout/{id}/async_payment {"outcome": succeeded|failed}: settle a bank debit."""
        session = session_of(request)
        body = await json_body(request, required=False)
        outcome = body.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed"):
            raise ControlError(400, "outcome must be succeeded or failed")
        if not checkout.settle_async(state, session, outcome == "succeeded"):
            raise ControlError(409, "No delayed payment is pending on this session")
        return state.render(session)

    async def advance(request: Request) -> dict[str, Any]:
        """POST /subscriptions/{id}/advance {"fail": false}: run the renewal now."""
        sub = state.find(request.path_params["sub_id"], "subscription")
        if sub is None:
            raise ControlError(404, "No such subscription")
        body = await json_body(request, required=False)
        invoice = subscriptions.renew(state, sub, decline=True if body.get("fail") else None)
        return {
            "subscription": state.render(sub),
            "invoice": state.render(invoice) if invoice else None,
        }

    async def dunning(request: Request) -> dict[str, Any]:
        """POST /subscriptions/{id}/dunning {"outcome": unpaid|paused}: Stripe moves the status."""
        sub = state.find(request.path_params["sub_id"], "subscription")
        if sub is None:
            raise ControlError(404, "No such subscription")
        body = await json_body(request)
        outcome = body.get("outcome")
        if outcome not in ("unpaid", "paused"):
            raise ControlError(400, "outcome must be unpaid or paused")
        try:
            subscriptions.dunning_outcome(state, sub, outcome)
        except ValueError as exc:
            raise ControlError(409, str(exc)) from None
        return state.render(sub)

    async def fail_next_payment(request: Request) -> dict[str, Any]:
        """POST /fail_next_payment {"customer"?, "count": 1}: decline the next charges."""
        body = await json_body(request, required=False)
        key = body.get("customer") or "*"
        state.armed_failures[key] = state.armed_failures.get(key, 0) + int(body.get("count", 1))
        return {"armed": dict(state.armed_failures)}

    async def settings(request: Request) -> dict[str, Any]:
        """GET/POST /settings: async_payment_delay_s (null = never) and async_payment_outcome."""
        if request.method == "POST":
            body = await json_body(request)
            if "async_payment_delay_s" in body:
                delay = body["async_payment_delay_s"]
                state.async_payment_delay_s = None if delay is None else float(delay)
            if "async_payment_outcome" in body:
                if body["async_payment_outcome"] not in ("succeeded", "failed"):
                    raise ControlError(400, "async_payment_outcome must be succeeded or failed")
                state.async_payment_outcome = body["async_payment_outcome"]
        return {
            "async_payment_delay_s": state.async_payment_delay_s,
            "async_payment_outcome": state.async_payment_outcome,
        }

    async def dispute(request: Request) -> dict[str, Any]:
        """POST /charges/{id}/dispute {"reason"?}: the cardholder disputes the charge."""
        body = await json_body(request, required=False)
        try:
            opened = disputes.open_dispute(
                state, request.path_params["charge_id"], str(body.get("reason", "fraudulent"))
            )
        except StripeError as exc:
            raise ControlError(exc.status, exc.message) from None
        return state.render(opened)

    async def close_dispute(request: Request) -> dict[str, Any]:
        """POST /disputes/{id}/close {"outcome": won|lost}: the bank decides."""
        body = await json_body(request)
        try:
            closed = disputes.close_dispute(
                state, request.path_params["dispute_id"], str(body.get("outcome"))
            )
        except StripeError as exc:
            raise ControlError(exc.status, exc.message) from None
        return state.render(closed)

    routes = [
        ("/deliveries", deliveries, ["GET"]),
        ("/redeliver", redeliver, ["POST"]),
        ("/drain", drain, ["POST"]),
        ("/events", list_events, ["GET"]),
        ("/checkout/{session_id}/complete", complete, ["POST"]),
        ("/checkout/{session_id}/async_payment", async_payment, ["POST"]),
        ("/subscriptions/{sub_id}/advance", advance, ["POST"]),
        ("/subscriptions/{sub_id}/dunning", dunning, ["POST"]),
        ("/fail_next_payment", fail_next_payment, ["POST"]),
        ("/settings", settings, ["GET", "POST"]),
        ("/charges/{charge_id}/dispute", dispute, ["POST"]),
        ("/disputes/{dispute_id}/close", close_dispute, ["POST"]),
    ]
    return Starlette(
        routes=[Route(path, _guard(state, fn), methods=methods) for path, fn, methods in routes]
    )
