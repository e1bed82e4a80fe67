"""Warmup health labels and the "ready to send" verdict, as pure functions.

Used by the portal's dashboard and by the warmup-sync flow (which stores the label). Thresholds
follow docs/market.md 4.3 and 4.9: at least 14 days of warmup, health above 90 %, correct DNS.
Scores start around 50-70 and climb during the first two weeks of warmup, so a young mailbox is
judged against that ramp, not against a mature mailbox's thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

MIN_WARMUP_DAYS = 14
FULL_VOLUME_DAYS = 21
RAMP_DAILY_VOLUME = 10
FULL_DAILY_VOLUME = 30

HEALTHY_MIN = 90.0
WATCH_MIN = 75.0
AT_RISK_MIN = 50.0
# A fall this large within the window is a warning even when the score is still high.
SHARP_DROP = 15.0
TREND_DAYS = 7
# On warmup day 0 every threshold is this much lower; the allowance shrinks to nothing by
# MIN_WARMUP_DAYS (a 2-day-old mailbox at 56 is on track; at 40 it is not).
EARLY_ALLOWANCE = 35.0


class HealthLabel(StrEnum):
    HEALTHY = "healthy"
    WARMING = "warming"
    WATCH = "watch"
    AT_RISK = "at-risk"
    BURNED = "burned"


class Readiness(StrEnum):
    READY = "ready"
    NOT_YET = "not_yet"
    AT_RISK = "at_risk"


ADVICE = {
    HealthLabel.HEALTHY: "Healthy: keep sending within the safe daily volume.",
    HealthLabel.WARMING: "Warming up: low scores are normal in the first two weeks; no action needed.",
    HealthLabel.WATCH: "Watch: keep volume low and check your copy and list quality.",
    HealthLabel.AT_RISK: "At risk: pause campaigns on this mailbox and let warmup recover it.",
    HealthLabel.BURNED: "Burned: stop sending from this mailbox; replace its domain from your dashboard.",
}


@dataclass(frozen=True)
class DayStats:
    """One day of a mailbox's warmup numbers (None = the vendor had no data)."""

    day: date
    health: float | None = None
    reply_rate: float | None = None
    sent: int | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether a mailbox (or a whole provision) may send cold email, and how much per day."""

    state: Readiness
    safe_daily_volume: int
    days_left: int
    message: str


def health_label(
    history: Sequence[DayStats], *, warmup_started_on: date | None = None
) -> HealthLabel | None:
    """Label a mailbox from its daily history (any order); None when there is no data at all.

    With ``warmup_started_on``, a mailbox in its first MIN_WARMUP_DAYS is judged against the
    warmup ramp: a score that is low but on track is WARMING, not a warning.
    """
    scored = sorted((d for d in history if d.health is not None), key=lambda d: d.day)
    if not scored:
        return None
    latest = scored[-1].health
    assert latest is not None
    recent = [d.health for d in scored[-TREND_DAYS:] if d.health is not None]
    drop = max(recent) - latest if recent else 0.0
    # Age unknown: judge as a mature mailbox (the cautious reading).
    allowance = (
        early_allowance(warmup_age_days(warmup_started_on, scored[-1].day))
        if warmup_started_on is not None
        else 0.0
    )
    if latest < AT_RISK_MIN - allowance:
        return HealthLabel.BURNED
    if latest < WATCH_MIN - allowance or drop >= SHARP_DROP:
        return HealthLabel.AT_RISK
    if latest < HEALTHY_MIN:
        return HealthLabel.WARMING if allowance > 0 else HealthLabel.WATCH
    return HealthLabel.HEALTHY


def early_allowance(age_days: int) -> float:
    """How many points below the mature thresholds a mailbox of this warmup age may score."""
    if age_days >= MIN_WARMUP_DAYS:
        return 0.0
    return EARLY_ALLOWANCE * (MIN_WARMUP_DAYS - age_days) / MIN_WARMUP_DAYS


def warmup_age_days(started_on: date | None, today: date) -> int:
    """Whole days of warmup so far (0 when it has not started)."""
    if started_on is None or started_on > today:
        return 0
    return (today - started_on).days


def mailbox_verdict(
    *,
    label: HealthLabel | None,
    warmup_started_on: date | None,
    today: date,
    dns_ok: bool = True,
) -> Verdict:
    """Decide whether one mailbox is ready to send, and its safe daily cold-email volume."""
    age = warmup_age_days(warmup_started_on, today)
    if label in (HealthLabel.BURNED, HealthLabel.AT_RISK):
        return Verdict(Readiness.AT_RISK, 0, 0, ADVICE[label])
    if not dns_ok:
        return Verdict(
            Readiness.NOT_YET, 0, max(MIN_WARMUP_DAYS - age, 0), "DNS is not fully set up yet."
        )
    if warmup_started_on is None:
        return Verdict(Readiness.NOT_YET, 0, MIN_WARMUP_DAYS, "Warmup has not started yet.")
    if age < MIN_WARMUP_DAYS:
        left = MIN_WARMUP_DAYS - age
        return Verdict(
            Readiness.NOT_YET, 0, left, f"Warming up: {left} day{'s' if left != 1 else ''} left."
        )
    if label is None:
        return Verdict(Readiness.NOT_YET, 0, 0, "Waiting for the first health score.")
    if label in (HealthLabel.WATCH, HealthLabel.WARMING) or age < FULL_VOLUME_DAYS:
        return Verdict(
            Readiness.READY,
            RAMP_DAILY_VOLUME,
            0,
            f"Ready at {RAMP_DAILY_VOLUME} emails a day; increase slowly.",
        )
    return Verdict(
        Readiness.READY, FULL_DAILY_VOLUME, 0, f"Ready at {FULL_DAILY_VOLUME} emails a day."
    )


def overall_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """Combine mailbox verdicts: ready only when all are; volumes add up over ready mailboxes."""
    if not verdicts:
        return Verdict(Readiness.NOT_YET, 0, MIN_WARMUP_DAYS, "No mailboxes yet.")
    volume = sum(v.safe_daily_volume for v in verdicts if v.state is Readiness.READY)
    at_risk = sum(1 for v in verdicts if v.state is Readiness.AT_RISK)
    waiting = [v for v in verdicts if v.state is Readiness.NOT_YET]
    if at_risk:
        return Verdict(
            Readiness.AT_RISK,
            volume,
            max((v.days_left for v in waiting), default=0),
            f"{at_risk} mailbox{'es' if at_risk != 1 else ''} at risk: pause sending from "
            f"{'them' if at_risk != 1 else 'it'}.",
        )
    if waiting:
        left = max(v.days_left for v in waiting)
        text = (
            f"Not yet: {left} day{'s' if left != 1 else ''} of warmup left."
            if left
            else "Not yet: waiting for health scores."
        )
        return Verdict(Readiness.NOT_YET, volume, left, text)
    return Verdict(
        Readiness.READY, volume, 0, f"Ready to send: up to {volume} cold emails a day in total."
    )
