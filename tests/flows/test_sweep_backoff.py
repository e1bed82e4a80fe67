"""The sweeper checks webhook-covered waits on a backoff schedule only while Zapmail's webhooks arrive."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.db import utcnow
from core.models import Provision
from core.models import PurchaseState
from core.models import WebhookEvent
from tasks.sweep import BACKOFF_EVERY_S
from tasks.sweep import BACKOFF_POINTS_S
from tasks.sweep import due_on_backoff
from tasks.sweep import find_waiting
from tests.flows.conftest import Pipeline


def sweeps_that_check(duration_s: int, interval_s: int = 60) -> list[int]:
    """The elapsed times (one sweep per interval) at which a wait is checked."""
    return [t for t in range(0, duration_s + 1, interval_s) if due_on_backoff(t, interval_s)]


def test_backoff_checks_at_each_point_once_then_every_fifteen_minutes() -> None:
    checked = sweeps_that_check(3 * 3600)
    assert checked[: len(BACKOFF_POINTS_S)] == list(BACKOFF_POINTS_S)
    after = checked[len(BACKOFF_POINTS_S) :]
    assert after and all(b - a == BACKOFF_EVERY_S for a, b in zip(after, after[1:], strict=False))
    # A three-hour wait costs 14 listings instead of the 180 of a check every minute.
    assert len(checked) == 4 + (3 * 3600 - 960) // BACKOFF_EVERY_S


@pytest.mark.parametrize("interval_s", [30, 60, 90, 300])
def test_no_gap_is_longer_than_the_cap_whatever_the_sweep_interval(interval_s: int) -> None:
    checked = sweeps_that_check(6 * 3600, interval_s)
    gaps = [b - a for a, b in zip(checked, checked[1:], strict=False)]
    assert checked[0] <= BACKOFF_POINTS_S[0] + interval_s
    assert max(gaps) <= BACKOFF_EVERY_S + interval_s


def _waiting(pipeline: Pipeline, email: str, waiting_for: str, waited_s: float) -> int:
    provision_id = pipeline.paid_provision(email=email)
    row = pipeline.session.get(Provision, provision_id)
    for domain in row.domains:
        domain.purchase_state = PurchaseState.PURCHASED
    row.waiting_for = waiting_for
    row.waiting_since = utcnow() - timedelta(seconds=waited_s)
    row.current_flow_run_id = f"00000000-0000-0000-0000-{provision_id:012d}"
    pipeline.session.commit()
    return provision_id


def _zapmail_webhook(pipeline: Pipeline, age: timedelta, domain: str = "other.com") -> None:
    pipeline.session.add(
        WebhookEvent(
            provider="zapmail",
            event_id=f"test-{domain}-{age.total_seconds()}",
            event_type="domain.updated",
            received_at=utcnow() - age,
            payload={"event": "domain.updated", "data": {"domainName": domain.upper()}},
        )
    )
    pipeline.session.commit()


def _found(interval_s: float = 60.0) -> set[int]:
    return {int(w["provision_id"]) for w in find_waiting.fn(500, interval_s)}


def test_without_webhooks_every_waiting_provision_is_checked_every_sweep(
    pipeline: Pipeline,
) -> None:
    early = _waiting(pipeline, "early@student.test", "domains_active", 30)
    between = _waiting(pipeline, "between@student.test", "mailboxes_active", 400)
    assert _found() == {early, between}


def test_with_webhooks_flowing_covered_waits_are_checked_only_when_due(
    pipeline: Pipeline,
) -> None:
    _zapmail_webhook(pipeline, timedelta(minutes=5))
    early = _waiting(pipeline, "early@student.test", "domains_active", 30)
    due = _waiting(pipeline, "due@student.test", "mailboxes_active", 250)
    between = _waiting(pipeline, "between@student.test", "domains_active", 400)
    plusvibe = _waiting(pipeline, "plusvibe@student.test", "accounts_connected", 400)
    found = _found()
    # PlusVibe sends no webhook: its wait is checked at every sweep.
    assert found == {due, plusvibe}
    assert early not in found and between not in found


def test_webhooks_silent_for_a_day_bring_back_checks_every_sweep(pipeline: Pipeline) -> None:
    _zapmail_webhook(pipeline, timedelta(hours=25))
    between = _waiting(pipeline, "between@student.test", "domains_active", 400)
    assert _found() == {between}


def test_a_webhook_that_could_not_resume_its_run_makes_the_wait_due_at_once(
    pipeline: Pipeline,
) -> None:
    _zapmail_webhook(pipeline, timedelta(minutes=5))
    announced = _waiting(pipeline, "announced@student.test", "domains_active", 400)
    quiet = _waiting(pipeline, "quiet@student.test", "domains_active", 400)
    names = [d.name for d in pipeline.session.get(Provision, announced).domains]
    for name in names[:-1]:
        _zapmail_webhook(pipeline, timedelta(seconds=40), domain=name)
    # Partly announced: the webhook resumes the run when the rest arrive, the sweeper waits.
    assert _found() == set()
    # The last one arrived while the run was between its check and its suspend: nothing
    # resumed it, so the sweeper checks it at once instead of at the next backoff point.
    _zapmail_webhook(pipeline, timedelta(seconds=20), domain=names[-1])
    assert _found() == {announced}
    assert quiet not in _found()


def test_first_wait_suspends_without_a_listing_only_while_webhooks_arrive(
    pipeline: Pipeline,
) -> None:
    from tasks import records
    from tasks.waits import _announced_later

    provision_id = pipeline.paid_provision(email="fresh@student.test")
    # No webhook ever came: check first (the listing may show the domains ready).
    assert not _announced_later(provision_id, "wait_domains", "domains_active")
    _zapmail_webhook(pipeline, timedelta(minutes=5))
    assert _announced_later(provision_id, "wait_domains", "domains_active")
    # PlusVibe sends none: always checked.
    assert not _announced_later(provision_id, "connect_plusvibe", "accounts_connected")
    # Once suspended for this wait, the resumed run checks before suspending again.
    records.mark_waiting(
        provision_id, "wait_domains", waiting_for="domains_active", summary="domains"
    )
    assert not _announced_later(provision_id, "wait_domains", "domains_active")
