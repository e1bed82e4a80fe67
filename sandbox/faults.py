"""The vendor gate: one ASGI middleware that adds latency, injects faults and counts calls.

It sits in front of every vendor mount (Stripe included) and leaves /_sandbox alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from sandbox.context import SandboxContext

log = logging.getLogger(__name__)

KINDS = ("status", "rate_limit", "timeout", "drop_response", "latency", "after_effect")
FAULT_KEYS = {
    "body",
    "vendor",
    "method",
    "path",
    "kind",
    "status",
    "retry_after",
    "hold_s",
    "latency_ms",
    "times",
}


class FaultError(ValueError):
    """A fault definition is invalid."""


@dataclass
class Fault:
    """One injected fault and how many more requests it affects (None = until cleared)."""

    id: int
    vendor: str
    method: str
    path: str
    kind: str
    status: int = 500
    retry_after: str | None = None
    hold_s: float = 30.0
    latency_ms: float = 0.0
    body: str | None = None
    remaining: int | None = 1
    hits: int = 0

    def matches(self, vendor: str, method: str, path: str) -> bool:
        """Tell whether this fault applies to a request."""
        if self.remaining == 0 or vendor != self.vendor:
            return False
        if self.method != "*" and self.method != method:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def as_dict(self) -> dict[str, Any]:
        """Return the fault as JSON-able data."""
        return dict(self.__dict__)


class FaultStore:
    """The list of active faults."""

    def __init__(self, vendors: set[str]) -> None:
        self._vendors = vendors
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        """Validate a fault definition and store it."""
        unknown = sorted(set(spec) - FAULT_KEYS)
        if unknown:
            raise FaultError(f"unknown fault key: {unknown[0]}")
        vendor, kind = spec.get("vendor"), spec.get("kind")
        if vendor not in self._vendors:
            raise FaultError(f"vendor must be one of {sorted(self._vendors)}")
        if kind not in KINDS:
            raise FaultError(f"kind must be one of {list(KINDS)}")
        path = spec.get("path", "*")
        if not isinstance(path, str) or not path:
            raise FaultError("path must be a non-empty string")
        times = spec.get("times", 1)
        if times is not None and (
            not isinstance(times, int) or isinstance(times, bool) or times < 1
        ):
            raise FaultError("times must be a positive integer or null")
        status = spec.get("status", 500 if kind in ("status", "after_effect") else 504)
        if kind == "after_effect":
            # Performed, then any answer at all: success codes included (a 2xx with a body the
            # caller cannot read is one of the answers a money call must survive).
            if not _is_int(status) or not 100 <= status <= 599:
                raise FaultError("status must be an HTTP status code (100-599)")
        elif not _is_int(status) or not 400 <= status <= 599:
            raise FaultError("status must be an HTTP error code (400-599)")
        body = spec.get("body")
        if body is not None and not isinstance(body, str):
            raise FaultError("body must be a string or null")
        if body is not None and kind != "after_effect":
            raise FaultError("body is only for kind after_effect")
        retry_after = spec.get("retry_after", 1 if kind == "rate_limit" else None)
        fault = Fault(
            id=next(self._ids),
            vendor=vendor,
            method=str(spec.get("method", "*")).upper(),
            path=path,
            kind=kind,
            status=429 if kind == "rate_limit" else status,
            retry_after=None if retry_after is None else str(retry_after),
            hold_s=_number(spec, "hold_s", 30.0),
            latency_ms=_number(spec, "latency_ms", 0.0),
            body=body,
            remaining=times,
        )
        self._faults.append(fault)
        return fault

    def take(self, vendor: str, method: str, path: str) -> Fault | None:
        """Return the first fault matching a request and consume one use of it."""
        for fault in self._faults:
            if fault.matches(vendor, method, path):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        """Return every fault, exhausted ones included (remaining 0)."""
        return [f.as_dict() for f in self._faults]

    def remove(self, fault_id: int) -> bool:
        """Delete one fault; return whether it existed."""
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        """Delete every fault."""
        self._faults.clear()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(spec: dict[str, Any], key: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"{key} must be a non-negative number")
    return float(value)


@dataclass
class Stats:
    """Per vendor, per 'METHOD /route-template', counts by status code."""

    counts: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    )

    def record(self, vendor: str, route: str, status: int) -> None:
        """Count one answered request."""
        self.counts[vendor][route][str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return counts with per-vendor and overall totals and 429 counts."""
        vendors: dict[str, Any] = {}
        total = limited = 0
        for vendor, routes in self.counts.items():
            v_total = sum(sum(codes.values()) for codes in routes.values())
            v_limited = sum(codes.get("429", 0) for codes in routes.values())
            vendors[vendor] = {
                "total": v_total,
                "rate_limited": v_limited,
                "routes": {route: dict(codes) for route, codes in sorted(routes.items())},
            }
            total += v_total
            limited += v_limited
        return {"vendors": vendors, "total": total, "rate_limited": limited}

    def clear(self) -> None:
        """Forget every count."""
        self.counts.clear()


class VendorGate:
    """Pure-ASGI middleware: latency, faults and stats for requests under a vendor prefix."""

    def __init__(
        self,
        app: ASGIApp,
        ctx: SandboxContext,
        mounts: dict[str, tuple[str, Any]],
        faults: FaultStore,
        stats: Stats,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.mounts = mounts  # prefix -> (vendor name, the vendor's Starlette app)
        self.faults = faults
        self.stats = stats
        self._rng = random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hit = self._vendor_for(scope["path"])
        if hit is None:
            await self.app(scope, receive, send)
            return
        vendor, subpath, vendor_app = hit
        method = scope["method"]
        route = f"{method} {_route_template(vendor_app, method, subpath)}"
        status_seen: list[int] = []

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        await self._latency(vendor)
        fault = self.faults.take(vendor, method, subpath)
        try:
            if fault is None or fault.kind == "latency":
                if fault is not None:
                    await asyncio.sleep(fault.latency_ms / 1000)
                await self.app(scope, receive, counting_send)
            elif fault.kind in ("status", "rate_limit"):
                await self._error(vendor, fault, counting_send)
            elif fault.kind == "timeout":
                await self._hold(receive, fault.hold_s)
                await self._error(vendor, fault, counting_send)
            elif fault.kind == "after_effect":
                # The side effect happens (a charge is a charge), then the configured answer.
                await self.app(scope, receive, _discard)
                await self._error(vendor, fault, counting_send)
            else:  # drop_response: the side effect happens, the caller never hears of it
                await self.app(scope, receive, _discard)
                await self._hold(receive, fault.hold_s)
                await self._error(vendor, fault, counting_send)
        finally:
            if status_seen:
                self.stats.record(vendor, route, status_seen[0])

    def _vendor_for(self, path: str) -> tuple[str, str, Any] | None:
        for prefix, (vendor, app) in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return vendor, path[len(prefix) :] or "/", app
        return None

    async def _latency(self, vendor: str) -> None:
        cfg = self.ctx.config
        base = cfg.vendor_latency_ms.get(vendor, cfg.latency_ms)
        jitter = self._rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0
        delay = max(0.0, base + jitter)
        if delay:
            await asyncio.sleep(delay / 1000)

    async def _error(self, vendor: str, fault: Fault, send: Send) -> None:
        status = fault.status
        message = {
            429: "Too many requests",
            504: "Gateway timeout",
        }.get(status, "Injected fault")
        if fault.body is not None:
            body = fault.body.encode()
        else:
            body = json.dumps(self.ctx.error_body(vendor, status, message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode()))
        with contextlib.suppress(OSError, RuntimeError):  # the caller may have hung up
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _hold(receive: Receive, seconds: float) -> None:
        """Wait `seconds`, or less if the client disconnects first."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiter = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiter


async def _discard(_message: dict) -> None:
    return None


def _route_template(app: Any, method: str, path: str) -> str:
    """Return the matching route's path template, or the raw path when nothing matches."""
    routes = getattr(app, "routes", None) or []
    probe = {"type": "http", "path": path, "root_path": "", "method": method}
    partial = None
    for route in routes:
        try:
            match, _ = route.matches(probe)
        except Exception:  # a route that cannot judge a bare scope just does not match
            continue
        if match == Match.FULL:
            prefix = getattr(route, "path", path) or path
            inner = getattr(route, "routes", None)
            regex = getattr(route, "path_regex", None)
            if inner and regex is not None:  # a Mount: descend with the remaining path
                rest = "/" + (regex.match(path).groupdict().get("path") or "")
                return prefix + _route_template(route, method, rest)
            return prefix
        if match == Match.PARTIAL and partial is None:
            partial = getattr(route, "path", path)
    return partial or path
