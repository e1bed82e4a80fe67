"""Sliding-window rate limiter on wall time, keyed by API key value, and the key/limit guard."""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

ErrorResponse = Callable[..., Response]


@dataclass(frozen=True)
class Rule:
    """At most `limit` requests per `window_s` wall seconds in the bucket `name`."""

    name: str
    limit: int
    window_s: float


class Limiter:
    """Sliding-log limiter; a refused request does not consume capacity."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], deque[float]] = {}

    def check(self, key: str, rules: Sequence[Rule], *, force: bool = False) -> int | None:
        """Record a hit for `key` under every rule; return Retry-After seconds if refused.

        With force=True the hit is always recorded and never refused (used for requests
        rejected earlier, e.g. a bad key, which still count against that key value).
        """
        now = time.monotonic()
        logs = []
        wait = 0.0
        for rule in rules:
            log = self._logs.setdefault((key, rule.name), deque())
            while log and log[0] <= now - rule.window_s:
                log.popleft()
            logs.append(log)
            if len(log) >= rule.limit > 0:
                # The request may go once enough old hits leave the window.
                oldest = log[len(log) - rule.limit]
                wait = max(wait, oldest + rule.window_s - now)
        if wait > 0 and not force:
            return max(1, math.ceil(wait))
        for log in logs:
            log.append(now)
        return None

    def clear(self) -> None:
        """Forget every window."""
        self._logs.clear()


def guard(
    request: Request,
    limiter: Limiter,
    *,
    header: str,
    expected_key: str,
    rules: Sequence[Rule] | None,
    error: ErrorResponse,
    invalid_message: str = "Invalid API key",
    missing_message: str | None = None,
) -> Response | None:
    """Check a vendor's API key and rate limits; return the refusal, or None to go on.

    ``rules=None`` means limits are switched off. Unauthenticated calls still count against
    the limiter for that key value, as Zapmail documents; they are never refused by it.
    """
    key = request.headers.get(header, "")
    valid = bool(key) and hmac.compare_digest(key.encode(), expected_key.encode())
    if rules:
        retry_after = limiter.check(key, rules, force=not valid)
        if retry_after is not None:
            return error(429, "Too many requests", {"Retry-After": str(retry_after)})
    if not valid:
        return error(401, invalid_message if key or missing_message is None else missing_message)
    return None
