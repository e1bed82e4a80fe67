"""The /v1 front door: routing, API-key auth, form decoding, idempotency keys, error envelopes."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.vendors.stripe import catalog
from sandbox.vendors.stripe import checkout
from sandbox.vendors.stripe import disputes
from sandbox.vendors.stripe import events
from sandbox.vendors.stripe import invoice_api
from sandbox.vendors.stripe import payments
from sandbox.vendors.stripe import portal
from sandbox.vendors.stripe import updates
from sandbox.vendors.stripe.errors import StripeError
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.forms import check_known
from sandbox.vendors.stripe.forms import parse_qs
from sandbox.vendors.stripe.store import API_VERSION
from sandbox.vendors.stripe.store import State

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 24 * 3600
METHODS = ["GET", "POST", "DELETE"]
Handler = Callable[..., Any]


ENDPOINTS = (
    catalog.ROUTES
    + checkout.ROUTES
    + updates.ROUTES
    + invoice_api.ROUTES
    + payments.ROUTES
    + disputes.ROUTES
    + portal.ROUTES
    + events.ROUTES
)
Table = dict[str, tuple[frozenset[str], Handler]]


def _unrecognized(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        # curl -u sk_test_...: the key is the user name, the password is empty.
        try:
            return base64.b64decode(value).decode().partition(":")[0]
        except ValueError:
            return ""
    return None


def _authenticate(state: State, request: Request) -> None:
    key = _api_key(request)
    if not key:
        raise StripeError(
            401,
            "authentication_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    if key != state.ctx.config.stripe_api_key:
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
        raise StripeError(401, "authentication_error", f"Invalid API Key provided: {shown}")


async def _params(request: Request) -> dict[str, Any]:
    if request.method != "POST":
        return parse_qs(request.url.query)
    content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
    if "json" in content_type or "multipart" in content_type:
        raise invalid(
            f"Invalid request: unsupported Content-Type {content_type}. The Stripe API "
            "accepts application/x-www-form-urlencoded bodies."
        )
    body = (await request.body()).decode("utf-8", errors="replace")
    # Stripe merges query-string parameters into POST bodies.
    return {**parse_qs(request.url.query), **parse_qs(body)}


def _expand(params: dict[str, Any]) -> list[str]:
    raw = params.get("expand")
    if raw in (None, ""):
        return []
    return [raw] if isinstance(raw, str) else [str(x) for x in raw]


def _replay(state: State, key: str, method: str, path: str, params: dict[str, Any]):
    now = state.now()
    for old in [k for k, rec in state.idempotency.items() if rec["at"] < now - IDEMPOTENCY_TTL_S]:
        del state.idempotency[old]
    record = state.idempotency.get(key)
    if record is None:
        return None
    if (record["method"], record["path"]) != (method, path):
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used for the same endpoint they were "
            f"first used for ('{record['method']} {record['path']}' vs '{method} {path}'). "
            f"Try using a key other than '{key}' if you meant to execute a different request.",
        )
    if record["params"] != params:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
        )
    return record


def routes(state: State) -> list[Route]:
    """One Starlette route per API path (so stats and faults see templates), plus a 404."""
    tables: dict[str, Table] = {}
    for method, path, allowed, handler in ENDPOINTS:
        tables.setdefault(path, {})[method] = (allowed, handler)
    found = [
        Route(path, _endpoint(state, table), methods=METHODS) for path, table in tables.items()
    ]
    return [*found, Route("/v1/{rest:path}", _endpoint(state, {}), methods=METHODS)]


def _endpoint(state: State, table: Table) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        request_id = "req_" + state.new_id("")[:14]
        headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        method = request.method
        root = request.scope.get("root_path", "")
        path = (
            request.url.path[len(root) :] if request.url.path.startswith(root) else request.url.path
        )
        key = request.headers.get("idempotency-key") if method == "POST" else None
        if key:
            headers["Idempotency-Key"] = key
        try:
            _authenticate(state, request)
            params = await _params(request)
            if method not in table:
                raise _unrecognized(method, path)
            allowed, handler = table[method]
            path_params = [v for k, v in request.path_params.items() if k != "rest"]
            check_known(params, allowed)
            if key:
                if len(key) > 255:
                    raise invalid("Idempotency keys may be at most 255 characters.")
                record = _replay(state, key, method, path, params)
                if record is not None:
                    headers.update(
                        {"Idempotent-Replayed": "true", "Original-Request": record["request_id"]}
                    )
                    return JSONResponse(record["body"], record["status"], headers=headers)
            status, body = _execute(state, handler, params, path_params, request_id, key)
            # Stripe saves a result only once the endpoint started executing (so not for
            # parameter validation errors), and then replays it, errors included.
            if key and (status == 200 or status == 402 or status >= 500):
                state.idempotency[key] = {
                    "method": method,
                    "path": path,
                    "params": params,
                    "status": status,
                    "body": body,
                    "request_id": request_id,
                    "at": state.now(),
                }
            return JSONResponse(body, status, headers=headers)
        except StripeError as exc:
            return JSONResponse(exc.body(), exc.status, headers=headers)

    return endpoint


def _execute(state, handler, params, path_params, request_id, key) -> tuple[int, Any]:
    state.request = {"id": request_id, "idempotency_key": key}
    try:
        result = handler(state, params, *path_params)
        return 200, state.render(result, _expand(params))
    except StripeError as exc:
        if exc.status in (400, 404):
            # A rejected request emits nothing; a declined payment (402) did happen, so its
            # events (invoice.payment_failed, ...) still go out.
            state.outbox.clear()
            raise
        return exc.status, exc.body()
    except Exception:
        log.exception("Stripe simulator bug on %s", handler.__name__)
        state.outbox.clear()
        err = StripeError(500, "api_error", "An unknown error occurred in the Stripe sandbox.")
        return 500, err.body()
    finally:
        state.request = None
        state.flush()
