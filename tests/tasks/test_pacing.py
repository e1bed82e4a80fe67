"""The local pacer in front of a Prefect rate limit (a narrow unit: a fake clock and server)."""

from __future__ import annotations

import pytest

from tasks import pacing
from tasks.pacing import MARGIN_S
from tasks.pacing import REFRESH_S
from tasks.pacing import Pacer

ROUND_TRIP_S = 0.02


class FakeServer:
    """A Prefect server's capacity-1 limit as seen by one process, on a fake clock."""

    def __init__(self, interval: float, refusals: int = 0) -> None:
        self.now = 100.0
        self.interval_s = interval
        self.refusals = refusals  # the next asks another process got in before
        self.asked: list[tuple[float, bool]] = []
        self.reads = 0
        self.fallbacks = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def interval(self, _name: str) -> float:
        self.reads += 1
        return self.interval_s

    def ask(self, _name: str) -> bool:
        granted = self.refusals == 0
        self.refusals = max(0, self.refusals - 1)
        self.asked.append((self.now, granted))
        self.now += ROUND_TRIP_S
        return granted

    def fallback(self, _name: str) -> None:
        self.fallbacks += 1
        self.now += ROUND_TRIP_S


def paced(server: FakeServer) -> Pacer:
    return Pacer(
        "plusvibe",
        slots=server,  # type: ignore[arg-type]  # a stand-in with the same two methods
        fallback=server.fallback,
        clock=server.clock,
        sleep=server.sleep,
    )


def gaps(server: FakeServer) -> list[float]:
    times = [at for at, _granted in server.asked]
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_each_slot_is_asked_for_a_full_interval_after_the_last_one_returned() -> None:
    server = FakeServer(1 / 4.8)
    pacer = paced(server)

    for _ in range(4):
        pacer.take()

    assert server.asked[0] == (100.0, True)  # nothing to wait for at first
    # The round trip plus the refill plus the margin: never early, never much later.
    assert gaps(server) == pytest.approx([ROUND_TRIP_S + 1 / 4.8 + MARGIN_S] * 3)
    assert server.reads == 1  # the live pace is read once, not per request


def test_a_slot_another_process_took_is_asked_again_one_interval_after_the_refusal() -> None:
    server = FakeServer(0.25, refusals=2)

    paced(server).take()

    assert [granted for _at, granted in server.asked] == [False, False, True]
    assert gaps(server) == pytest.approx([ROUND_TRIP_S + 0.25 + MARGIN_S] * 2)


def test_time_spent_elsewhere_counts_toward_the_wait() -> None:
    server = FakeServer(0.25)
    pacer = paced(server)
    pacer.take()
    server.now += 1.0  # the caller wrote to the DB meanwhile: the slot has long refilled

    pacer.take()

    assert gaps(server) == pytest.approx([1.02])


def test_the_pace_follows_the_live_limit_after_a_while() -> None:
    server = FakeServer(0.25)
    pacer = paced(server)
    pacer.take()
    server.now += REFRESH_S

    pacer.take()

    assert server.reads == 2


def test_a_limit_that_is_not_capacity_one_is_left_to_prefects_rate_limit() -> None:
    server = FakeServer(0.0)  # what the server read gives for e.g. 50 slots at 200/s

    for _ in range(3):
        paced(server).take()

    assert (server.fallbacks, server.asked) == (3, [])


def test_every_paced_client_of_a_process_shares_one_turn() -> None:
    assert pacing.pacer("plusvibe") is pacing.pacer("plusvibe")
    assert pacing.pacer("plusvibe") is not pacing.pacer("heyreach")
