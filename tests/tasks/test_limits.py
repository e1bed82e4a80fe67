"""The vendor limits' values against the windows they must keep (arithmetic, no server)."""

from __future__ import annotations

import math

import pytest

from tasks.limits import HEYREACH
from tasks.limits import PLUSVIBE
from tasks.limits import ZAPMAIL
from tasks.limits import VendorLimit


def most_grants(vendor: VendorLimit, window_s: float) -> int:
    """Most slots a capacity-1 bucket grants in any window of ``window_s`` seconds."""
    assert vendor.limit == 1
    # Grants are at least 1/rate apart; a sliding window (the sandbox's) excludes its left edge.
    return math.ceil(window_s * vendor.rate)


@pytest.mark.parametrize(
    ("vendor", "per_second", "per_minute"),
    [(ZAPMAIL, 5, 200), (PLUSVIBE, 5, None), (HEYREACH, None, 300)],
    ids=["zapmail", "plusvibe", "heyreach"],
)
def test_every_limit_keeps_inside_its_vendors_windows(
    vendor: VendorLimit, per_second: int | None, per_minute: int | None
) -> None:
    if per_second is not None:
        assert most_grants(vendor, 1.0) <= per_second
    if per_minute is not None:
        assert most_grants(vendor, 60.0) <= per_minute


def test_plusvibe_is_paced_close_to_its_5_per_second_with_room_for_network_jitter() -> None:
    # The warmup sync's wall time is bounded by this rate (issue #7); what six grants span
    # beyond one second is what arrivals may bunch by before PlusVibe sees a sixth request.
    assert PLUSVIBE.rate == 4.8
    assert 5 / PLUSVIBE.rate - 1 == pytest.approx(0.0417, abs=1e-3)
