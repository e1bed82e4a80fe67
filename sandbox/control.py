"""The /_sandbox control plane: health, reset, clock, config, ledger, faults, stats, vendor helpers."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from sandbox.context import ConfigError
from sandbox.context import SandboxContext
from sandbox.faults import FaultError
from sandbox.faults import FaultStore
from sandbox.faults import Stats
from sandbox.vendors import BadBodyError
from sandbox.vendors import json_body
from sandbox.vendors.heyreach import HeyReachSim
from sandbox.vendors.plusvibe import PlusVibeSim
from sandbox.vendors.zapmail import ZapmailSim
from sandbox.vendors.zapmail import dns as zapmail_dns


class ControlError(Exception):
    """A control-plane request is invalid."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_control_app(
    ctx: SandboxContext,
    *,
    faults: FaultStore,
    stats: Stats,
    zapmail: ZapmailSim,
    plusvibe: PlusVibeSim,
    heyreach: HeyReachSim,
) -> Starlette:
    """Build the control-plane app mounted at /_sandbox."""

    async def body_of(request: Request) -> dict[str, Any]:
        return await json_body(request, required=False)

    async def health(_request: Request) -> dict[str, Any]:
        return {"ok": True}

    async def reset(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        ctx.reset(config=bool(body.get("config", False)))
        return {"ok": True, "config": ctx.config.as_dict()}

    async def ledger(request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "entries": ctx.ledger.entries(
                vendor=q.get("vendor") or None, kind=q.get("kind") or None
            )
        }

    def clock_view() -> dict[str, Any]:
        return {
            "now": ctx.clock.now().isoformat(),
            "timestamp": ctx.clock.timestamp(),
            "speed": ctx.clock.speed,
        }

    async def get_clock(_request: Request) -> dict[str, Any]:
        return clock_view()

    async def set_clock(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        unknown = set(body) - {"advance_seconds", "speed"}
        if unknown:
            raise ControlError(f"unknown clock key: {sorted(unknown)[0]}")
        advance, speed = body.get("advance_seconds"), body.get("speed")
        if advance is not None and (not _number(advance) or advance < 0):
            raise ControlError("advance_seconds must be a non-negative number")
        if speed is not None and (not _number(speed) or speed <= 0):
            raise ControlError("speed must be a positive number")
        if speed is not None:
            ctx.clock.set_speed(float(speed))
            ctx.config.speed = float(speed)
        if advance:
            ctx.clock.advance(float(advance))
        return clock_view()

    async def get_config(_request: Request) -> dict[str, Any]:
        return ctx.config.as_dict()

    async def set_config(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        try:
            ctx.config.merge(body)
        except ConfigError as exc:
            raise ControlError(str(exc)) from exc
        if "speed" in body:
            ctx.clock.set_speed(ctx.config.speed)
        return ctx.config.as_dict()

    async def list_faults(_request: Request) -> dict[str, Any]:
        return {"faults": faults.list()}

    async def add_fault(request: Request) -> dict[str, Any]:
        try:
            return faults.add(await body_of(request)).as_dict()
        except FaultError as exc:
            raise ControlError(str(exc)) from exc

    async def clear_faults(_request: Request) -> dict[str, Any]:
        faults.clear()
        return {"ok": True}

    async def delete_fault(request: Request) -> dict[str, Any]:
        if not faults.remove(request.path_params["fault_id"]):
            raise ControlError("no such fault", 404)
        return {"ok": True}

    async def get_stats(_request: Request) -> dict[str, Any]:
        return stats.snapshot()

    async def reset_stats(_request: Request) -> dict[str, Any]:
        stats.clear()
        return {"ok": True}

    async def zapmail_unavailable(request: Request) -> dict[str, Any]:
        names = (await body_of(request)).get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ControlError("names must be an array of strings")
        return {"unavailable": zapmail.mark_unavailable(names)}

    async def zapmail_wallet(request: Request) -> dict[str, Any]:
        balance = (await body_of(request)).get("balance")
        if not _number(balance) or balance < 0:
            raise ControlError("balance must be a non-negative number")
        zapmail.set_wallet(balance)
        return {"walletBalance": float(zapmail.state.wallet)}

    async def zapmail_fail(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        domain, times = body.get("domain"), body.get("times", 1)
        if not isinstance(domain, str) or not domain:
            raise ControlError("domain is required")
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise ControlError("times must be a non-negative integer")
        zapmail.fail_mailboxes(domain, times)
        return {"domain": domain.lower(), "times": times}

    async def zapmail_dns_drift(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        domain = body.get("domain")
        if not isinstance(domain, str) or not domain:
            raise ControlError("domain is required")
        try:
            if body.get("restore") is True:
                return {"records": zapmail_dns.restore(zapmail.state, domain)}
            kind, host, value = body.get("recordType"), body.get("host"), body.get("value")
            if not isinstance(kind, str) or not isinstance(host, str):
                raise ControlError("recordType and host are required (or restore: true)")
            if value is not None and not isinstance(value, str):
                raise ControlError("value must be a string (edit) or null (delete)")
            return {"records": zapmail_dns.drift(zapmail.state, domain, kind, host, value)}
        except LookupError as exc:
            raise ControlError(str(exc), 404) from exc
        except ValueError as exc:
            raise ControlError(str(exc)) from exc

    async def zapmail_health_score(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        domain, value = body.get("domain"), _percent_or_none(body.get("score"), "score")
        if not isinstance(domain, str) or not domain:
            raise ControlError("domain is required")
        try:
            return {
                "domain": domain.lower(),
                "score": zapmail_dns.pin_score(zapmail.state, domain, value),
            }
        except LookupError as exc:
            raise ControlError(str(exc), 404) from exc

    async def zapmail_visit(request: Request) -> dict[str, Any]:
        try:
            return zapmail_dns.visit(zapmail.state, request.query_params.get("domain", ""))
        except LookupError as exc:
            raise ControlError(str(exc), 404) from exc

    async def zapmail_state(_request: Request) -> dict[str, Any]:
        return {**zapmail.state.dump(), "webhooks": zapmail.webhooks.sent}

    async def plusvibe_health(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        email, value = body.get("email"), _percent_or_none(body.get("health"), "health")
        if not isinstance(email, str) or not email:
            raise ControlError("email is required")
        matched = plusvibe.force_health(email, value)
        return {"email": email.lower(), "health": value, "accounts": matched}

    async def plusvibe_seed(request: Request) -> dict[str, Any]:
        return {"workspaces": plusvibe.seed(_seed_specs(await body_of(request)))}

    async def plusvibe_fail_workspace(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        workspace_id, status = body.get("workspace_id"), body.get("status", 500)
        times = body.get("times", 1)
        if not isinstance(workspace_id, str) or workspace_id.lower() not in plusvibe.workspaces:
            raise ControlError("workspace_id must name an existing workspace")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ControlError("status must be an HTTP error status (400-599)")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 0
        ):
            raise ControlError("times must be a non-negative integer or null")
        plusvibe.fail_workspace(workspace_id, status, times)
        return {"workspace_id": workspace_id.lower(), "status": status, "times": times}

    async def plusvibe_state(_request: Request) -> dict[str, Any]:
        return plusvibe.dump()

    async def heyreach_state(_request: Request) -> dict[str, Any]:
        return {
            "lists": [
                {**row, "leads": list(heyreach.leads[row["id"]].values())}
                for row in heyreach.lists.values()
            ]
        }

    def wrap(fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await fn(request))
            except ControlError as exc:
                return _bad(str(exc), exc.status)
            except BadBodyError as exc:
                return _bad(str(exc))

        endpoint.__name__ = fn.__name__
        return endpoint

    table = [
        ("/health", health, ["GET"]),
        ("/reset", reset, ["POST"]),
        ("/ledger", ledger, ["GET"]),
        ("/clock", get_clock, ["GET"]),
        ("/clock", set_clock, ["POST"]),
        ("/config", get_config, ["GET"]),
        ("/config", set_config, ["POST"]),
        ("/faults", list_faults, ["GET"]),
        ("/faults", add_fault, ["POST"]),
        ("/faults", clear_faults, ["DELETE"]),
        ("/faults/{fault_id:int}", delete_fault, ["DELETE"]),
        ("/stats", get_stats, ["GET"]),
        ("/stats/reset", reset_stats, ["POST"]),
        ("/zapmail/unavailable", zapmail_unavailable, ["POST"]),
        ("/zapmail/wallet", zapmail_wallet, ["POST"]),
        ("/zapmail/fail-mailboxes", zapmail_fail, ["POST"]),
        ("/zapmail/state", zapmail_state, ["GET"]),
        ("/zapmail/dns", zapmail_dns_drift, ["POST"]),
        ("/zapmail/health-score", zapmail_health_score, ["POST"]),
        ("/zapmail/visit", zapmail_visit, ["GET"]),
        ("/plusvibe/health", plusvibe_health, ["POST"]),
        ("/plusvibe/state", plusvibe_state, ["GET"]),
        ("/plusvibe/seed", plusvibe_seed, ["POST"]),
        ("/plusvibe/fail-workspace", plusvibe_fail_workspace, ["POST"]),
        ("/heyreach/state", heyreach_state, ["GET"]),
    ]
    return Starlette(
        routes=[Route(path, wrap(fn), methods=methods) for path, fn, methods in table],
        exception_handlers={HTTPException: _http_error},
    )


MAX_SEED_ACCOUNTS = 100_000


def _seed_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate a PlusVibe seed request: workspaces with names, addresses and warmup age."""
    raw = body.get("workspaces")
    if not isinstance(raw, list) or not raw:
        raise ControlError("workspaces must be a non-empty array")
    specs, seen, total = [], set(), 0
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"name", "emails", "warmup_days"}:
            raise ControlError("each workspace is {name, emails, warmup_days?}")
        name, emails, days = item.get("name"), item.get("emails"), item.get("warmup_days", 0)
        if not isinstance(name, str) or not name.strip():
            raise ControlError("each workspace needs a name")
        if not isinstance(emails, list) or not all(
            isinstance(e, str) and "@" in e.strip() for e in emails
        ):
            raise ControlError("emails must be an array of email addresses")
        if not _number(days) or not 0 <= days <= 3650:
            raise ControlError("warmup_days must be a number from 0 to 3650")
        cleaned = [e.strip().lower() for e in emails]
        if len(set(cleaned)) != len(cleaned) or seen & set(cleaned):
            raise ControlError("an email address appears twice in the seed")
        seen.update(cleaned)
        total += len(cleaned)
        specs.append({"name": name.strip(), "emails": cleaned, "warmup_days": float(days)})
    if total > MAX_SEED_ACCOUNTS:
        raise ControlError(f"at most {MAX_SEED_ACCOUNTS} accounts per seed")
    return specs


def _percent_or_none(value: Any, name: str) -> int | None:
    """An integer 0-100, or None; anything else is refused naming the key."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100
    ):
        raise ControlError(f"{name} must be an integer 0-100 or null")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _bad(exc.detail, exc.status_code)
