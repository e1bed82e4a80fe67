"""PlusVibe data model: client logins and email accounts, plus the wire error shape."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

DAY_S = 86400.0
DEFAULT_SETTINGS: dict[str, Any] = {
    "daily_limit": 30,
    "interval_limit_in_min": 10,
    "warmup_max_daily_limit": 20,
    "warmup_initial_daily_limit": 2,
    "warmup_pace_increment": 2,
    "bulk_warmup_is_slow_rampup": "no",
    "warmup_randomize": "no",
    "warmup_randomize_num": 0,
    "warmup_reply_rate": 0.35,
    "warmup_schedule": None,
    "warmup_business_type": None,
    "warmup_signature": "no",
    "signature": "",
}


class PlusVibeError(Exception):
    """An error answered as {"message": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(_status: int, message: str) -> dict[str, Any]:
    """PlusVibe's (undocumented, observed) error shape."""
    return {"message": message}


def iso(ts: float | None) -> str | None:
    """Format simulated epoch seconds as ISO-8601 with milliseconds and Z."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class Client:
    """An agency client login (email + password) with workspace grants."""

    id: str
    email: str
    password: str
    first_name: str
    last_name: str
    business_name: str
    grants: list[dict[str, Any]]
    created_at: float

    def public(self) -> dict[str, Any]:
        """The client as listed (never with its password)."""
        return {
            "client_id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "business_name": self.business_name,
            "workspaces": self.grants,
            "created_at": iso(self.created_at),
        }


@dataclass
class Account:
    """An email account (mailbox) connected to a PlusVibe workspace."""

    id: str
    workspace_id: str
    email: str
    first_name: str
    last_name: str
    provider: str
    created_at: float
    updated_at: float
    smtp: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    warmup_active: bool = False
    enabled_since: float | None = None
    warmup_enb_dt: float | None = None
    warm_seconds: float = 0.0

    def warmup_days(self, now: float) -> float | None:
        """Simulated days of warmup so far (None if never enabled)."""
        if self.warmup_enb_dt is None:
            return None
        running = (
            now - self.enabled_since
            if self.warmup_active and self.enabled_since is not None
            else 0.0
        )
        return (self.warm_seconds + max(0.0, running)) / DAY_S

    def set_warmup(self, active: bool, now: float) -> None:
        """Turn warmup on or off, keeping the accumulated warmup time."""
        if active and not self.warmup_active:
            self.warmup_active, self.enabled_since, self.warmup_enb_dt = True, now, now
        elif not active and self.warmup_active:
            self.warm_seconds += max(0.0, now - (self.enabled_since or now))
            self.warmup_active, self.enabled_since = False, None
        self.updated_at = now
