"""What a student is told: one name's answer, and a check's answers with any pause or failure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

AVAILABLE = "available"
TAKEN = "taken"
CLAIMED = "claimed"
PREMIUM = "premium"
TOO_EXPENSIVE = "too_expensive"
INVALID = "invalid"
UNKNOWN = "unknown"

VENDOR_DOWN = (
    "We could not reach our domain provider to check availability. "
    "Try again in a minute; your choices are kept."
)
TOO_SLOW = (
    "Checking availability is taking longer than usual. Try again in a minute; "
    "your choices are kept."
)


@dataclass
class Availability:
    """What the student sees for one name."""

    name: str
    status: str
    reason: str
    price_cents: int | None = None
    renew_cents: int | None = None
    checked_at: datetime | None = None
    stale: bool = False

    @property
    def selectable(self) -> bool:
        """Whether the student may add this name to their order."""
        return self.status == AVAILABLE


@dataclass
class CheckResult:
    """The answers for a set of names, and whether checks are paused."""

    results: dict[str, Availability] = field(default_factory=dict)
    paused_s: int = 0
    error: str | None = None
    calls: int = 0

    @property
    def message(self) -> str | None:
        """Plain words about paused or failed checks, if any."""
        if self.paused_s:
            minutes = max(1, math.ceil(self.paused_s / 60))
            return (
                f"Availability checks are paused for {minutes} minute{'s' if minutes != 1 else ''} "
                "because of our domain provider's limit; your choices are kept. Names checked "
                "recently are still shown."
            )
        return self.error
