"""Vendor rate limits as Prefect global concurrency limits, shared by every worker process.

Every vendor request of a task passes through :class:`ThrottledTransport`, which takes a slot of
the vendor's limit first (``strict=True``: a missing limit fails loudly instead of silently not
limiting). The limits are created by ``ensure_limits`` (called by the setup command), never by
hand. Long runs of calls (the warmup sync) use :func:`paced`: the same slot of the same limit,
only asked for once it has refilled (tasks/pacing.py).

What a limit guarantees, across all processes: a token bucket of capacity 1 refilled at ``rate``
per second grants slots at least ``1 / rate`` apart, so any one-second window holds at most
``floor(rate) + 1`` grants (5 for any rate from 4 up to, not including, 5) and any minute at
most ``60 * rate + 1``: inside sliding windows such as Zapmail's 5/s and 200/min and PlusVibe's
5/s. A vendor counts arrivals, which trail the grants by a varying delay (our process, the
network): six requests can only land in one second of a 5/s window when their delays differ by
more than ``5 / rate - 1`` seconds (0.56 s for Zapmail at 3.2/s; 42 ms for PlusVibe at 4.8/s,
and that only while the bucket is kept full). Such a request is answered 429, which is absorbed
below and never fails a task, except on a request that spends money: a vendor may answer 429
after performing it, so that 429 goes back to the caller as an unknown outcome, never re-sent.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prefect import get_client

from clients._http import SPENDS_MONEY
from tasks.pacing import pacer
from tasks.pacing import take_slot


@dataclass(frozen=True)
class VendorLimit:
    """One global concurrency limit: ``limit`` slots refilled at ``rate`` per second."""

    name: str
    limit: int
    rate: float
    why: str


ZAPMAIL = VendorLimit("zapmail", 1, 3.2, "Zapmail: 5 requests/s and 200/min per API key")
# The availability bucket is global to the operator account: the portal's wizard spends most
# of it, so flows keep to a small share (re-checks of stale answers only).
ZAPMAIL_AVAILABILITY = VendorLimit(
    "zapmail-availability",
    5,
    5 / 1800,
    "Zapmail: 100 availability checks per 30 min (flows' share)",
)
# Close to PlusVibe's 5/s: the warmup sync lists hundreds of workspaces one call each, paced
# (tasks/pacing.py) to take each slot as soon as it refills (about 4.4/s measured).
PLUSVIBE = VendorLimit("plusvibe", 1, 4.8, "PlusVibe: about 5 requests/s")
HEYREACH = VendorLimit("heyreach", 1, 4.0, "HeyReach: 300 requests/min")
VENDOR_LIMITS = (ZAPMAIL, ZAPMAIL_AVAILABILITY, PLUSVIBE, HEYREACH)

AVAILABILITY_PATHS = ("/domains/available-bulk", "/domains/available")
MAX_429_RESENDS = 8
MAX_429_WAIT_S = 60.0
_log = logging.getLogger(__name__)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def ensure_limits() -> list[str]:
    """Create or update every vendor limit on the Prefect server; return their names."""
    with get_client(sync_client=True) as client:
        for vendor in VENDOR_LIMITS:
            client.upsert_global_concurrency_limit_by_name(
                vendor.name, vendor.limit, slot_decay_per_second=vendor.rate
            )
    return [vendor.name for vendor in VENDOR_LIMITS]


def no_slot(_name: str) -> None:
    """Take no slot at all: for tests of task code without a Prefect server (tasks.runtime)."""


def zapmail_limits(request: httpx.Request) -> list[str]:
    """Limits a Zapmail request occupies: the general one, plus the availability bucket."""
    if request.url.path.endswith(AVAILABILITY_PATHS):
        return [ZAPMAIL.name, ZAPMAIL_AVAILABILITY.name]
    return [ZAPMAIL.name]


class ThrottledTransport(httpx.BaseTransport):
    """An httpx transport that waits for the vendor's rate-limit slot before each request."""

    def __init__(
        self,
        limits_for: Callable[[httpx.Request], list[str]],
        inner: httpx.BaseTransport | None = None,
        take: Callable[[str], None] | None = None,
    ) -> None:
        self._limits_for = limits_for
        self._inner = inner or httpx.HTTPTransport()
        self._take = take or take_slot

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Take the slot(s) and send; on a 429, wait as the vendor asks and send again.

        Never again for a request marked as spending money (``SPENDS_MONEY`` extension): its
        429 is returned as is, and the purchase protocol reconciles before anything else.
        """
        spends = bool(request.extensions.get(SPENDS_MONEY))
        for attempt in range(MAX_429_RESENDS + 1):
            # One limit at a time: acquiring several in one call makes Prefect compute the wait
            # from the slowest limit's refill rate even when only a fast one is busy.
            for name in self._limits_for(request):
                self._take(name)
            response = self._inner.handle_request(request)
            if response.status_code != 429 or attempt == MAX_429_RESENDS or spends:
                return response
            # A 429 of a request that spends nothing is safe to send again; absorbing it here
            # keeps rate limits from ever using up task retries. A purchase is never re-sent:
            # nothing proves the vendor refused it before charging.
            wait = _retry_after(response) or min(2.0**attempt, 30.0)
            response.read()
            response.close()
            _log.info("%s answered 429; sending again in %.1fs", request.url.host, wait)
            time.sleep(min(wait, MAX_429_WAIT_S) * random.uniform(1.0, 1.3))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def throttled(vendor: VendorLimit, take: Callable[[str], None] | None = None) -> ThrottledTransport:
    """A transport that holds every request to ``vendor``'s single limit."""
    return ThrottledTransport(lambda _request: [vendor.name], take=take)


def paced(vendor: VendorLimit) -> ThrottledTransport:
    """Like :func:`throttled`, for long runs of calls: asks for each slot only once it refilled."""
    return ThrottledTransport(lambda _request: [vendor.name], take=lambda name: pacer(name).take())
