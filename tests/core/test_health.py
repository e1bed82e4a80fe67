"""core.health: labels from warmup history and the ready-to-send verdict."""

from __future__ import annotations

from datetime import date
from datetime import timedelta

import pytest

from core.health import DayStats
from core.health import HealthLabel
from core.health import Readiness
from core.health import health_label
from core.health import mailbox_verdict
from core.health import overall_verdict

TODAY = date(2026, 11, 26)


def _history(*scores: float | None) -> list[DayStats]:
    start = TODAY - timedelta(days=len(scores) - 1)
    return [DayStats(start + timedelta(days=i), score) for i, score in enumerate(scores)]


@pytest.mark.parametrize(
    "scores,label",
    [
        ((97, 98, 99), HealthLabel.HEALTHY),
        ((92, 88), HealthLabel.WATCH),
        ((80, 74), HealthLabel.AT_RISK),
        ((99, 99, 99, 99, 80), HealthLabel.AT_RISK),  # a sharp drop while still above 75
        ((60, 45), HealthLabel.BURNED),
        ((95, None), HealthLabel.HEALTHY),  # "no data" days are skipped
    ],
)
def test_labels(scores: tuple[float | None, ...], label: HealthLabel) -> None:
    assert health_label(_history(*scores)) is label


def test_no_data_means_no_label() -> None:
    assert health_label([]) is None
    assert health_label(_history(None, None)) is None


def test_history_order_does_not_matter() -> None:
    history = _history(40, 99)
    assert health_label(list(reversed(history))) is HealthLabel.HEALTHY


def test_not_yet_counts_the_days_left() -> None:
    verdict = mailbox_verdict(
        label=HealthLabel.HEALTHY, warmup_started_on=TODAY - timedelta(days=4), today=TODAY
    )
    assert (verdict.state, verdict.days_left, verdict.safe_daily_volume) == (
        Readiness.NOT_YET,
        10,
        0,
    )
    assert "10 days left" in verdict.message


def test_ramp_then_full_volume() -> None:
    ramp = mailbox_verdict(
        label=HealthLabel.HEALTHY, warmup_started_on=TODAY - timedelta(days=15), today=TODAY
    )
    full = mailbox_verdict(
        label=HealthLabel.HEALTHY, warmup_started_on=TODAY - timedelta(days=30), today=TODAY
    )
    watch = mailbox_verdict(
        label=HealthLabel.WATCH, warmup_started_on=TODAY - timedelta(days=30), today=TODAY
    )
    assert (ramp.state, ramp.safe_daily_volume) == (Readiness.READY, 10)
    assert (full.state, full.safe_daily_volume) == (Readiness.READY, 30)
    assert watch.safe_daily_volume == 10


def test_at_risk_and_dns_block_sending() -> None:
    old = TODAY - timedelta(days=30)
    burned = mailbox_verdict(label=HealthLabel.BURNED, warmup_started_on=old, today=TODAY)
    dns = mailbox_verdict(
        label=HealthLabel.HEALTHY, warmup_started_on=old, today=TODAY, dns_ok=False
    )
    assert (burned.state, burned.safe_daily_volume) == (Readiness.AT_RISK, 0)
    assert "Burned" in burned.message
    assert (dns.state, dns.safe_daily_volume) == (Readiness.NOT_YET, 0)
    assert (
        mailbox_verdict(label=None, warmup_started_on=None, today=TODAY).state is Readiness.NOT_YET
    )


def test_overall_verdict_adds_up_ready_mailboxes() -> None:
    old = TODAY - timedelta(days=30)
    ready = mailbox_verdict(label=HealthLabel.HEALTHY, warmup_started_on=old, today=TODAY)
    young = mailbox_verdict(
        label=HealthLabel.HEALTHY, warmup_started_on=TODAY - timedelta(days=10), today=TODAY
    )
    burned = mailbox_verdict(label=HealthLabel.BURNED, warmup_started_on=old, today=TODAY)
    assert overall_verdict([ready, ready]).safe_daily_volume == 60
    assert overall_verdict([ready, ready]).state is Readiness.READY
    mixed = overall_verdict([ready, young])
    assert (mixed.state, mixed.days_left, mixed.safe_daily_volume) == (Readiness.NOT_YET, 4, 30)
    risky = overall_verdict([ready, burned])
    assert risky.state is Readiness.AT_RISK and "1 mailbox at risk" in risky.message
    assert overall_verdict([]).state is Readiness.NOT_YET


@pytest.mark.parametrize("score", [56, 63, 71])
def test_a_two_day_old_mailbox_on_the_warmup_ramp_is_warming_not_at_risk(score: float) -> None:
    started = TODAY - timedelta(days=2)
    assert health_label(_history(score), warmup_started_on=started) is HealthLabel.WARMING
    # The same score on a mature mailbox is a real warning.
    old = TODAY - timedelta(days=40)
    assert health_label(_history(score), warmup_started_on=old) in (
        HealthLabel.AT_RISK,
        HealthLabel.WATCH,
    )


@pytest.mark.parametrize(
    "age,score,label",
    [
        (2, 40, HealthLabel.AT_RISK),  # far below the ramp even for day 2
        (2, 12, HealthLabel.BURNED),
        (2, 93, HealthLabel.HEALTHY),
        (13, 74, HealthLabel.WARMING),
        (13, 70, HealthLabel.AT_RISK),  # nearly two weeks in: the allowance is almost gone
        (14, 74, HealthLabel.AT_RISK),  # from day 14 the mature thresholds apply
        (14, 85, HealthLabel.WATCH),
    ],
)
def test_the_early_allowance_shrinks_to_nothing_by_day_14(
    age: int, score: float, label: HealthLabel
) -> None:
    started = TODAY - timedelta(days=age)
    assert health_label(_history(score), warmup_started_on=started) is label


def test_a_sharp_drop_is_a_warning_even_in_early_warmup() -> None:
    started = TODAY - timedelta(days=6)
    assert health_label(_history(80, 80, 62), warmup_started_on=started) is HealthLabel.AT_RISK


def test_without_a_start_date_the_mature_thresholds_apply() -> None:
    assert health_label(_history(60)) is HealthLabel.AT_RISK


def test_a_warming_mailbox_is_not_yet_ready_and_never_at_risk() -> None:
    started = TODAY - timedelta(days=2)
    label = health_label(_history(60), warmup_started_on=started)
    verdict = mailbox_verdict(label=label, warmup_started_on=started, today=TODAY)
    assert (verdict.state, verdict.days_left) == (Readiness.NOT_YET, 12)
    overall = overall_verdict([verdict, verdict])
    assert overall.state is Readiness.NOT_YET and "at risk" not in overall.message
    # A stale WARMING label on a mailbox past two weeks ramps up like WATCH.
    late = mailbox_verdict(
        label=HealthLabel.WARMING, warmup_started_on=TODAY - timedelta(days=30), today=TODAY
    )
    assert (late.state, late.safe_daily_volume) == (Readiness.READY, 10)
