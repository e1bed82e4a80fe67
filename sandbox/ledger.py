"""Append-only ledger of every simulated charge, refund and paid resource, for tests to audit."""

from __future__ import annotations

import itertools
from typing import Any

from sandbox.clock import Clock


class Ledger:
    """In-memory list of money-relevant events, stamped with simulated time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: list[dict[str, Any]] = []
        self._seq = itertools.count(1)

    def record(
        self, vendor: str, kind: str, item: str, amount: str | None = None, **details: Any
    ) -> dict[str, Any]:
        """Append one entry and return it."""
        entry = {
            "seq": next(self._seq),
            "at": self._clock.now().isoformat(),
            "vendor": vendor,
            "kind": kind,
            "item": item,
            "amount": amount,
            **details,
        }
        self._entries.append(entry)
        return entry

    def entries(self, vendor: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Return entries, optionally filtered by vendor and kind."""
        return [
            dict(e)
            for e in self._entries
            if (vendor is None or e["vendor"] == vendor) and (kind is None or e["kind"] == kind)
        ]

    def clear(self) -> None:
        """Forget every entry (sequence numbers keep increasing)."""
        self._entries.clear()
