"""Simulated clock: starts at real wall time and runs `speed` simulated seconds per wall second."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from datetime import datetime


class Clock:
    """A continuous simulated clock that can be sped up and jumped forward."""

    def __init__(self, speed: float = 1.0) -> None:
        self._speed = float(speed)
        self._wall_base = time.monotonic()
        self._sim_base = time.time()

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self._speed

    def timestamp(self) -> float:
        """Return simulated epoch seconds."""
        return self._sim_base + (time.monotonic() - self._wall_base) * self._speed

    def now(self) -> datetime:
        """Return the simulated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), tz=UTC)

    def set_speed(self, speed: float) -> None:
        """Change the speed, rebasing so simulated time stays continuous."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._rebase()
        self._speed = float(speed)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward by `seconds`."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._rebase()
        self._sim_base += seconds

    def reset(self) -> None:
        """Restart simulated time at the real wall time (speed unchanged)."""
        self._wall_base = time.monotonic()
        self._sim_base = time.time()

    async def sleep(self, sim_seconds: float) -> None:
        """Wait `sim_seconds` of simulated time (sim_seconds / speed wall seconds)."""
        await asyncio.sleep(max(0.0, sim_seconds) / self._speed)

    def _rebase(self) -> None:
        now_wall = time.monotonic()
        self._sim_base = self.timestamp()
        self._wall_base = now_wall
