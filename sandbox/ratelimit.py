"""Sliding-window rate limiter on wall time, keyed by API key value."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


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
