"""Availability settings: the call budget, cache lifetimes and the coalescing windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AvailabilityConfig:
    """Budget, cache lifetimes and the coalescing windows (from the Flask config)."""

    budget: int = 90
    window_s: int = 1800
    ttl_available_s: int = 900
    ttl_taken_s: int = 6 * 3600
    default_pause_s: int = 300
    # A partial batch (fewer than 20 names) waits this long for other students' names. 2 s packs
    # a launch minute into ~1.2 calls per student (1 s: ~1.45, 3 s: ~1.15; availability bench).
    gather_ms: int = 2000
    # A name in a call for longer than this belongs to a worker that died: taken over.
    claim_timeout_s: int = 60
    # A request gives up (and says so) after this; must exceed claim_timeout_s.
    max_wait_s: int = 90

    @classmethod
    def from_mapping(cls, config: Any) -> AvailabilityConfig:
        """Read the AVAILABILITY_* keys of a Flask config."""
        return cls(
            budget=int(config["AVAILABILITY_BUDGET"]),
            window_s=int(config["AVAILABILITY_WINDOW_S"]),
            ttl_available_s=int(config["AVAILABILITY_TTL_AVAILABLE_S"]),
            ttl_taken_s=int(config["AVAILABILITY_TTL_TAKEN_S"]),
            default_pause_s=int(config["AVAILABILITY_DEFAULT_PAUSE_S"]),
            gather_ms=int(config["AVAILABILITY_GATHER_MS"]),
            claim_timeout_s=int(config["AVAILABILITY_CLAIM_TIMEOUT_S"]),
            max_wait_s=int(config["AVAILABILITY_MAX_WAIT_S"]),
        )
