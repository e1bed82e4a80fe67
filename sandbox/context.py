"""Shared sandbox state: mutable config, simulated clock, ledger, RNG and reset hooks."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sandbox.clock import Clock
from sandbox.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass
class SandboxConfig:
    """Runtime knobs; POST /_sandbox/config merges JSON into it and CLI flags set it."""

    speed: float = 1.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    vendor_latency_ms: dict[str, float] = field(default_factory=dict)
    zapmail_api_key: str = "sandbox-zapmail-key"
    plusvibe_api_key: str = "sandbox-plusvibe-key"
    heyreach_api_key: str = "sandbox-heyreach-key"
    stripe_api_key: str = "sk_test_sandbox"
    stripe_webhook_url: str | None = None
    stripe_webhook_secret: str = "whsec_sandbox"
    stripe_webhook_duplicate_rate: float = 0.0
    stripe_webhook_shuffle: bool = False
    stripe_webhook_max_attempts: int = 8
    stripe_webhook_retry_base_s: float = 0.5
    zapmail_webhook_url: str | None = None
    zapmail_webhook_secret: str = "zapmail-whsec-sandbox"
    domain_activation_s: float = 900.0
    mailbox_activation_s: float = 3600.0
    export_delay_s: float = 120.0
    wallet_balance: float = 10000.0
    rate_limits_enabled: bool = True
    zapmail_per_second: int = 5
    zapmail_per_minute: int = 200
    zapmail_checks_per_30min: int = 100
    # Mailbox slots the operator account has bought (Zapmail refuses mailboxes beyond them).
    zapmail_mailbox_slots: int = 1000
    plusvibe_per_second: int = 5
    heyreach_per_minute: int = 300
    seed: int = 7

    def merge(self, values: dict[str, Any]) -> None:
        """Apply a partial update atomically; raise ConfigError naming the first bad key."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in values.items():
            if key not in types:
                raise ConfigError(f"unknown config key: {key}")
            if not _fits(types[key], value):
                raise ConfigError(f"bad value for config key {key}: expected {types[key]}")
        for key, value in values.items():
            if types[key] == "float":
                value = float(value)
            elif types[key] == "dict[str, float]":
                value = {str(k): float(v) for k, v in value.items()}
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        """Return the config as plain JSON-able data."""
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A config update names an unknown key or a value of the wrong type."""


def _fits(annotation: str, value: Any) -> bool:
    """Check a JSON value against a SandboxConfig field annotation."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if annotation == "float":
        return number
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "str | None":
        return value is None or isinstance(value, str)
    if annotation == "dict[str, float]":
        return isinstance(value, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        )
    return True


class SandboxContext:
    """Everything the simulators share; one instance per running sandbox."""

    def __init__(self, config: SandboxConfig | None = None, public_url: str = "") -> None:
        self.config = config or SandboxConfig()
        self.defaults = copy.deepcopy(self.config)  # startup values: CLI flags survive a reset
        self.clock = Clock(self.config.speed)
        self.ledger = Ledger(self.clock)
        self.public_url = public_url
        self.rng = random.Random(self.config.seed)
        self.error_bodies: dict[str, Callable[[int, str], dict]] = {}
        self._reset_hooks: list[Callable[[], None]] = []

    def on_reset(self, fn: Callable[[], None]) -> None:
        """Register a callback run by POST /_sandbox/reset."""
        self._reset_hooks.append(fn)

    def register_vendor(self, name: str, error_body: Callable[[int, str], dict]) -> None:
        """Register how a vendor shapes its error JSON (used for injected faults)."""
        self.error_bodies[name] = error_body

    def error_body(self, vendor: str, status: int, message: str) -> dict:
        """Return a vendor-shaped error body, or a generic one for unknown vendors."""
        shape = self.error_bodies.get(vendor)
        return shape(status, message) if shape else {"error": {"message": message}}

    def reset(self, *, config: bool = False) -> None:
        """Clear ledger and run every reset hook; restore default config when asked."""
        if config:
            self.config.merge(self.defaults.as_dict())
            self.clock.set_speed(self.config.speed)
        self.ledger.clear()
        self.rng.seed(self.config.seed)
        for fn in self._reset_hooks:
            try:
                fn()
            except Exception:  # one broken hook must not leave the others' state dirty
                log.exception("reset hook %r failed", fn)
