"""Local pacing in front of a Prefect rate limit, so a busy process never asks before its turn.

Prefect's rate limit of capacity 1 frees its slot ``1 / slot_decay_per_second`` after the last
change to the limit's row, and a refused request (HTTP 423) is such a change (the server decays
active slots from the row's ``updated``, which recording the refusal also bumps): every too-early
ask pushes the free slot back by a whole interval, and ``rate_limit`` then sleeps a random
Retry-After. A process that sends many requests in a row (the warmup sync) therefore asks only
once the slot it took last must have refilled: the server granted that slot before our call
returned, so a full interval from the return is always enough. Pacing from when we asked instead
saves the round trip but, measured on a loaded machine, ends in 423s for most requests.

The pacer asks the server itself (the same ``/increment`` call ``rate_limit`` makes) rather than
through ``rate_limit``: that call's hops through Prefect's background event loop were measured
to add tens of milliseconds per request on a busy machine, and this round trip is paid once per
request. Nothing else differs: the Prefect limit still decides, a missing limit still fails
loudly, and if another process takes the slot first the pacer asks again one interval after the
refusal instead of at a random Retry-After. Only the per-slot "concurrency-limit.acquired"
events are not emitted for paced requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

# A refill is due when floor(rate * elapsed) reaches 1 on the server; a few ms on top keep
# float rounding and clock reads from making an on-time ask a 423.
MARGIN_S = 0.002
# The pace is read from the live limit (operators and what-if runs may change it), at most
# this often: one small API call per process and half-minute.
REFRESH_S = 30.0


def take_slot(name: str) -> None:
    """Take one slot of Prefect limit ``name`` (a missing limit fails loudly: ``strict``)."""
    rate_limit(name, occupy=1, strict=True)


class PrefectSlots:
    """Asks the Prefect server for single rate-limit slots, on one kept-open API client."""

    def __init__(self) -> None:
        self._client: SyncPrefectClient | None = None
        self._url: str | None = None

    def interval(self, name: str) -> float:
        """Seconds the capacity-1 limit ``name`` needs to refill; 0 for any other limit."""
        try:
            limit = self._api().read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return 0.0  # nothing to pace; the strict slot request then fails loudly
        # A larger capacity lets bursts through at once; a local pace would only slow them.
        if limit.limit != 1 or not limit.active or limit.slot_decay_per_second <= 0:
            return 0.0
        return 1.0 / limit.slot_decay_per_second

    def ask(self, name: str) -> bool:
        """Take one slot of ``name`` if it is free now; False when the server refused (423)."""
        try:
            response = self._api().increment_concurrency_slots(
                names=[name], slots=1, mode="rate_limit"
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == httpx.codes.LOCKED:
                return False
            raise ConcurrencySlotAcquisitionError(f"Unable to take a slot of {name!r}") from exc
        except httpx.HTTPError as exc:
            # As rate_limit reports it, so task policies keep treating it as transient.
            raise ConcurrencySlotAcquisitionError(f"Unable to take a slot of {name!r}") from exc
        if not response.json():
            raise ConcurrencySlotAcquisitionError(
                f"Concurrency limit {name!r} must be created before acquiring slots"
            )
        return True

    def _api(self) -> SyncPrefectClient:
        # Kept open: a fresh client per request would also pay a new connection each time.
        url = PREFECT_API_URL.value()
        if self._client is None or url != self._url:
            if self._client is not None:
                self._client.__exit__(None, None, None)
            self._client = get_client(sync_client=True).__enter__()
            self._url = url
        return self._client


class Pacer:
    """Takes one slot of a Prefect rate limit at a time, each only once the last has refilled.

    Not for limits of a larger capacity (those go to ``rate_limit`` unchanged).
    """

    def __init__(
        self,
        name: str,
        *,
        slots: PrefectSlots | None = None,
        fallback: Callable[[str], None] = take_slot,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._slots = slots or PrefectSlots()
        self._fallback = fallback
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 0.0
        self._read_at: float | None = None
        self._next_at = 0.0

    def take(self) -> None:
        """Wait for this process's turn, then take a slot of the Prefect limit."""
        # Held across the Prefect call: two asks at once would make the second one a 423.
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= REFRESH_S:
                self._interval, self._read_at = self._slots.interval(self.name), now
            if not self._interval:
                self._fallback(self.name)
                return
            while True:
                if self._next_at > now:
                    self._sleep(self._next_at - now)
                granted = self._slots.ask(self.name)
                # Granted or refused, the server changed the limit before we heard back, so a
                # full interval from now is when the slot is free again (unless taken first).
                now = self._clock()
                self._next_at = now + self._interval + MARGIN_S
                if granted:
                    return


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer(name: str) -> Pacer:
    """The process's one pacer for limit ``name`` (every paced client of it shares the turn)."""
    with _pacers_lock:
        if name not in _pacers:
            _pacers[name] = Pacer(name)
        return _pacers[name]
