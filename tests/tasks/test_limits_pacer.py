"""The in-process pacer in front of Prefect's rate limits (a narrow unit: the clock is faked)."""

from __future__ import annotations

import pytest

from tasks import limits


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limits.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(limits.time, "sleep", fake.sleep)
    return fake


def test_requests_of_one_process_are_spaced_at_the_refill_interval(clock: FakeClock) -> None:
    pacer = limits.LocalPacer()
    for _ in range(4):
        pacer.wait(limits.PLUSVIBE.name)
    interval = 1 / limits.PLUSVIBE.rate
    assert clock.sleeps == [round(interval, 6), round(2 * interval, 6), round(3 * interval, 6)]


def test_an_idle_limit_lets_the_next_request_through_at_once(clock: FakeClock) -> None:
    pacer = limits.LocalPacer()
    pacer.wait(limits.HEYREACH.name)
    clock.now += 10  # long after the turn it booked
    pacer.wait(limits.HEYREACH.name)
    assert clock.sleeps == []


def test_limits_with_room_for_a_burst_are_not_paced(clock: FakeClock) -> None:
    pacer = limits.LocalPacer()
    for _ in range(limits.ZAPMAIL_AVAILABILITY.limit):
        pacer.wait(limits.ZAPMAIL_AVAILABILITY.name)
    assert clock.sleeps == []
