"""Zapmail v2 simulator (docs/vendors/zapmail.md): auth, limits, routes and control helpers."""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import Response
from starlette.routing import Route

from sandbox.context import SandboxContext
from sandbox.ratelimit import Limiter
from sandbox.ratelimit import Rule
from sandbox.ratelimit import guard
from sandbox.vendors import BadBodyError
from sandbox.vendors.zapmail import account
from sandbox.vendors.zapmail import dns
from sandbox.vendors.zapmail import domains
from sandbox.vendors.zapmail import exports
from sandbox.vendors.zapmail import mailbox_update
from sandbox.vendors.zapmail import mailboxes
from sandbox.vendors.zapmail.catalog import normalize
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import error_body
from sandbox.vendors.zapmail.http import error_response
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.state import ZapmailState
from sandbox.vendors.zapmail.webhooks import WebhookTicker

if TYPE_CHECKING:
    from sandbox.vendors.plusvibe import PlusVibeSim

Handler = Callable[["ZapmailSim", Request, Workspace], Awaitable[Response]]


class ZapmailSim:
    """The Zapmail simulator; `app` is mounted at /zapmail/api."""

    def __init__(self, ctx: SandboxContext, *, plusvibe: PlusVibeSim) -> None:
        self.ctx = ctx
        self.plusvibe = plusvibe
        self.state = ZapmailState(ctx)
        self.limiter = Limiter()
        self.webhooks = WebhookTicker(self)
        ctx.register_vendor("zapmail", error_body)
        ctx.on_reset(self.reset)
        self.app = Starlette(routes=self._routes(), exception_handlers={HTTPException: _http_error})

    def _routes(self) -> list[Route]:
        w = self._endpoint
        return [
            Route("/v2/users", w(account.get_user), methods=["GET"]),
            Route("/v2/workspaces", w(account.list_workspaces), methods=["GET"]),
            Route("/v2/workspaces", w(account.create_workspace), methods=["POST"]),
            Route("/v2/workspaces", w(account.rename_workspace), methods=["PUT"]),
            Route("/v2/billing", w(account.upsert_billing), methods=["POST", "PUT"]),
            Route("/v2/wallet/balance", w(account.wallet_balance), methods=["GET"]),
            Route("/v2/wallet/balance", w(account.wallet_topup), methods=["POST"]),
            Route(
                "/v2/domains/available-bulk",
                w(domains.available_bulk, search=True),
                methods=["POST"],
            ),
            Route("/v2/domains/available", w(domains.available, search=True), methods=["POST"]),
            Route("/v2/domains/buy", w(domains.buy), methods=["POST"]),
            Route("/v2/domains/assignable", w(domains.assignable), methods=["GET"]),
            Route("/v2/domains/dmarc", w(domains.set_dmarc), methods=["POST"]),
            Route("/v2/domains/update-auto-renew", w(domains.update_auto_renew), methods=["POST"]),
            Route("/v2/domains/forwarding", w(dns.set_forwarding), methods=["POST"]),
            Route("/v2/domains/remove-forwarding", w(dns.remove_forwarding), methods=["POST"]),
            Route("/v2/domains/health-score", w(dns.health_score), methods=["GET"]),
            # The notes write the path with a trailing slash (`/v2/dns/?id=`); both answer.
            Route("/v2/dns/", w(dns.get_dns), methods=["GET"]),
            Route("/v2/dns", w(dns.get_dns), methods=["GET"]),
            Route("/v2/domains", w(domains.list_domains), methods=["GET", "POST"]),
            Route("/v2/mailboxes", w(mailboxes.create), methods=["POST"]),
            Route("/v2/mailboxes", w(mailboxes.get_one), methods=["GET"]),
            Route("/v2/mailboxes", w(mailbox_update.update), methods=["PUT"]),
            Route("/v2/mailboxes/list", w(mailboxes.list_by_domain), methods=["GET"]),
            Route("/v2/mailboxes/retry-failed", w(mailboxes.retry_failed), methods=["PUT"]),
            Route(
                "/v2/mailboxes/scheduled-removal", w(mailboxes.scheduled_removal), methods=["PUT"]
            ),
            Route("/v2/exports/accounts/third-party", w(exports.add_account), methods=["POST"]),
            Route("/v2/exports/accounts/third-party", w(exports.update_account), methods=["PUT"]),
            Route("/v2/exports/accounts/third-party", w(exports.list_accounts), methods=["GET"]),
            Route("/v2/exports/mailboxes", w(exports.export_mailboxes), methods=["POST"]),
            Route("/v2/exports/status", w(exports.export_status), methods=["GET"]),
            Route("/invoices/{link_id}", _hosted_page, methods=["GET"]),
            Route("/pay/{link_id}", _hosted_page, methods=["GET"]),
        ]

    def _endpoint(
        self, handler: Handler, *, search: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with rate limits, auth, workspace selection and error envelopes."""

        async def endpoint(request: Request) -> Response:
            cfg = self.ctx.config
            rules = [
                Rule("second", cfg.zapmail_per_second, 1.0),
                Rule("minute", cfg.zapmail_per_minute, 60.0),
            ]
            if search:
                rules.append(Rule("search", cfg.zapmail_checks_per_30min, 1800.0))
            refused = guard(
                request,
                self.limiter,
                header="x-auth-zapmail",
                expected_key=cfg.zapmail_api_key,
                rules=rules if cfg.rate_limits_enabled else None,
                error=error_response,
                invalid_message="Invalid or missing API key",
                missing_message="API key is missing",
            )
            if refused is not None:
                return refused
            try:
                return await handler(self, request, self._workspace(request))
            except ZapmailError as exc:
                return error_response(exc.status, exc.message)
            except BadBodyError as exc:
                return error_response(400, str(exc))

        endpoint.__name__ = handler.__name__
        return endpoint

    def _workspace(self, request: Request) -> Workspace:
        key = request.headers.get("x-workspace-key") or request.headers.get("x-workspace-id")
        if not key:
            return self.state.workspaces[self.state.primary_id]
        ws = self.state.workspaces.get(key.strip())
        if ws is None:
            raise ZapmailError(404, "Workspace not found for the given x-workspace-key")
        return ws

    def reset(self) -> None:
        """Forget all Zapmail state and limiter windows."""
        self.state.reset()
        self.limiter.clear()
        self.webhooks.reset()

    def start(self) -> None:
        """Start background work (the webhook ticker)."""
        self.webhooks.start()

    async def stop(self) -> None:
        """Stop background work."""
        await self.webhooks.stop()

    def mark_unavailable(self, names: list[str]) -> list[str]:
        """Mark names as registered elsewhere; return them normalized."""
        cleaned = [normalize(n) for n in names]
        self.state.unavailable.update(cleaned)
        return cleaned

    def set_wallet(self, balance: float) -> None:
        """Set the wallet balance (USD)."""
        self.state.wallet = Decimal(str(balance)).quantize(Decimal("0.01"))

    def fail_mailboxes(self, domain: str, times: int) -> None:
        """Make the next `times` mailbox creations (or retries) on `domain` end FAILED."""
        self.state.fail_budget[normalize(domain)] = times


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Route not found" if exc.status_code == 404 else exc.detail
    return error_response(exc.status_code, message)


async def _hosted_page(request: Request) -> Response:
    """A stand-in for Zapmail's Stripe invoice / payment pages (nothing to pay in the sandbox)."""
    link = request.path_params["link_id"]
    return HTMLResponse(
        f"<!doctype html><title>Zapmail sandbox</title><p>Sandbox document {link}</p>"
    )
