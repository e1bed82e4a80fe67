"""The dashboard right after activation and beyond: first numbers, the ramp, what to do next."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import yaml
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.db import utcnow
from core.models import Mailbox
from core.models import ProvisioningStep
from core.pipeline import PROVISION_STEPS
from core.settings import PROJECT_ROOT
from portal import insights
from portal.templating import when
from tasks.plusvibe import WARMUP_DEFAULTS
from tests.factories import add_snapshots
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps


@pytest.fixture
def ann(session: Session, auth: Any) -> Any:
    """A signed-in student."""
    user = make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    return user


def _just_active(session: Session, user: Any, **fields: Any) -> Any:
    """A provision whose run has just finished: warmup on, no numbers synced yet."""
    provision = make_provision(session, user, status="active", activated_at=utcnow(), **fields)
    set_steps(session, provision, dict.fromkeys(PROVISION_STEPS, "completed"))
    session.commit()
    return provision


def _warmup_on_at(session: Session, provision: Any) -> Any:
    return session.scalars(
        select(ProvisioningStep.finished_at).where(
            ProvisioningStep.provision_id == provision.id, ProvisioningStep.step_key == "warmup"
        )
    ).one()


def test_right_after_activation_the_dashboard_says_when_the_first_numbers_come(
    client: Any, ann: Any, session: Session
) -> None:
    provision = _just_active(session, ann)
    page = client.get("/dashboard").get_data(as_text=True)
    # Reported: "warmup has not started" and "no data" while the progress page said it started.
    assert "Warmup has not started" not in page and "No data yet" not in page
    assert f"Warmup started at {when(_warmup_on_at(session, provision))}." in page
    assert "The first warmup numbers arrive within 15 min" in page
    assert "6 waiting for first numbers" in page
    assert page.count("First numbers soon") == 6 + 6  # each mailbox's badge and chart
    assert "Not yet: 14 days of warmup left." in page  # counted from when warmup was switched on
    box = session.scalars(select(Mailbox.id)).first()
    mailbox_page = client.get(f"/dashboard/mailboxes/{box}").get_data(as_text=True)
    assert "its first numbers arrive with the next warmup sync, within 15 min." in mailbox_page


def test_on_day_one_a_chart_is_the_ramp_to_the_target_not_a_lone_dot(
    client: Any, ann: Any, session: Session
) -> None:
    provision = _just_active(session, ann)
    add_snapshots(session, provision, days=1, health=58.0)
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    today = utcnow().date()
    first_chart = page.split('<svg class="chart"', 2)[1]
    # Reported: a single dot over a "03 Dec – 03 Dec" axis.
    assert f">{today:%d %b}</text>" in first_chart
    assert f">{today + timedelta(days=14):%d %b}</text>" in first_chart
    assert 'class="chart-ramp"' in first_chart and "14-day target" in first_chart
    assert '<circle class="chart-health"' in first_chart  # today's number, on the ramp
    assert "expected health in the first 14 days" in page


def _guide(page: str) -> str:
    """The "what next" guide's text, tags and runs of spaces removed."""
    guide = page.split('id="next-steps"', 1)[1].split("</section>", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", guide).split())


def test_a_mailbox_past_its_warmup_has_no_ramp(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=20)
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 6
    assert 'class="chart-ramp"' not in page and "14-day target" not in page
    # Warmup began 19 days ago: no date "at the earliest" in the past, and the ramp week is now.
    text = _guide(page)
    assert 'Start campaigns whenever this page says "Ready to send"' in text
    assert "at the earliest" not in text
    today = utcnow().date()
    assert (
        f"{today - timedelta(days=5):%d %b} – {today + timedelta(days=1):%d %b} now 10 60" in text
    )


def test_reply_rate_and_sends_say_what_they_count(client: Any, ann: Any, session: Session) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=20)
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    # Reported: "Average reply rate 31 %" beside "sent today 0" read as a campaign figure.
    assert "Average reply rate" not in page
    assert (
        "Warmup reply rate" in page and "replies to warmup emails (7 days), not campaigns" in page
    )
    assert "Campaign emails sent today" in page


def test_the_guide_says_how_to_start_and_how_much_to_send_day_by_day(
    client: Any, ann: Any, session: Session
) -> None:
    _just_active(
        session,
        ann,
        heyreach_list_id=4242,
        plusvibe_client_email="ann@plusvibe.test",
    )
    page = client.get("/dashboard").get_data(as_text=True)
    text = _guide(page)
    today = utcnow().date()

    def day(offset: int) -> str:
        return f"{today + timedelta(days=offset):%d %b}"

    assert "Sign in to PlusVibe" in text and "sign in as ann@plusvibe.test" in text
    assert f"on {today + timedelta(days=14):%d %b %Y} at the earliest" in text
    assert "open list #4242" in text and "choose this list when you create a campaign" in text
    # Starter: 6 mailboxes; core.health's rules: nothing for 14 days, 10 each for a week, then 30.
    assert f"{day(0)} – {day(13)} now none none 2 rising to 28 warmup emails a day" in text
    assert f"{day(14)} – {day(20)} 10 60 30 a day" in text
    assert f"from {day(21)} 30 180 30 a day" in text


def test_the_revealed_password_has_a_copy_button(
    app: Flask, client: Any, ann: Any, session: Session
) -> None:
    box = SecretBox.from_settings(app.extensions["settings"])
    _just_active(
        session,
        ann,
        plusvibe_client_email="ann@pv.test",
        plusvibe_client_password_enc=box.seal("S3cret-pass!"),
    )
    assert "data-copy=" not in client.get("/dashboard").get_data(as_text=True)
    page = client.post("/dashboard/plusvibe-password").get_data(as_text=True)
    assert re.search(
        r'<span class="mono secret" id="plusvibe-password">S3cret-pass!</span>\s*'
        r'<button type="button" class="btn btn-sm btn-secondary hidden" '
        r'data-copy="plusvibe-password">Copy</button>',
        page,
    )


def test_the_progress_page_of_an_active_order_says_setup_is_complete(
    client: Any, ann: Any, session: Session
) -> None:
    _just_active(session, ann)
    page = client.get("/progress").get_data(as_text=True)
    assert "12 of 12 steps done" in page
    assert "Setup is complete." in page
    assert "continues without you" not in page


def test_the_portals_warmup_figures_are_the_flows_own() -> None:
    # The guide's warmup ramp is the one tasks/plusvibe.py sets on every mailbox.
    assert (
        insights.WARMUP_FIRST_DAY,
        insights.WARMUP_DAILY_STEP,
        insights.WARMUP_MAX_PER_DAY,
    ) == (
        WARMUP_DEFAULTS.initial_daily_limit,
        WARMUP_DEFAULTS.pace_increment,
        WARMUP_DEFAULTS.max_daily_limit,
    )
    # "Within 15 min" is how often the sync-warmup deployment runs.
    deployments = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
    sync = next(d for d in deployments if d["entrypoint"].endswith(":sync_warmup"))
    assert [s["interval"] for s in sync["schedules"]] == [insights.WARMUP_SYNC_INTERVAL_S]
