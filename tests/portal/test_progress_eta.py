"""The progress page's estimates follow the vendors' clock, and its bar counts steps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from core.db import utcnow
from core.pipeline import MIN_SLOW_S
from core.pipeline import MIN_TYPICAL_S
from core.pipeline import STEPS
from core.pipeline import durations
from portal import create_app
from portal import progress
from portal.templating import duration
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.portal.conftest import portal_settings

# The demo's sandbox runs the vendors' clock 60 times faster than real time.
DEMO_SCALE = 60.0
# Domains bought, their activation under way (started five minutes ago).
TWO_DONE = {"zapmail_workspace": "completed", "buy_domains": "completed", "wait_domains": "running"}


def test_durations_at_real_speed_are_the_registry_and_scale_down_to_a_floor() -> None:
    for key, step in STEPS.items():
        assert durations(key, 1.0) == (step.typical_s, step.slow_s)
        typical, slow = durations(f"upgrade-3:{key}", DEMO_SCALE)
        assert typical == max(round(step.typical_s / DEMO_SCALE), MIN_TYPICAL_S)
        assert slow == max(round(step.slow_s / DEMO_SCALE), MIN_SLOW_S)
    # The waits dominate: domains in about 30 s and mailboxes in about a minute on the demo clock.
    assert durations("wait_domains", DEMO_SCALE)[0] == 30
    assert durations("wait_mailboxes", DEMO_SCALE)[0] == 60


@pytest.fixture
def started(session: Session) -> Any:
    """A student whose order was paid a minute ago, with two of eleven steps done."""
    user = make_user(session, "eta@example.com")
    provision = make_provision(
        session, user, status="provisioning", paid_at=utcnow() - timedelta(minutes=1)
    )
    set_steps(session, provision, TWO_DONE)
    session.commit()
    return user


def test_the_estimate_follows_the_vendor_clock(session: Session, started: Any) -> None:
    real = progress.load_snapshot(session, started.id)
    demo = progress.load_snapshot(session, started.id, DEMO_SCALE)
    assert real is not None and demo is not None
    # Another clock, another document: a tag from before a restart must not earn a 304.
    assert real.version != demo.version
    now = utcnow()
    at_real, at_demo = progress.build_document(real, now), progress.build_document(demo, now)
    # Reported: "about 1 h 38 min" for a run that ended 80 s later on the demo clock.
    assert at_real["remaining_s"] > 60 * 60
    assert 0 < at_demo["remaining_s"] <= 2 * 60
    assert at_demo["remaining_slow_s"] < at_real["remaining_slow_s"]
    running = next(s for s in at_demo["steps"] if s["status"] == "running")
    # The running step started five minutes ago: far longer than usual on the demo clock only.
    assert (
        running["slow"]
        and not next(s for s in at_real["steps"] if s["status"] == "running")["slow"]
    )
    # The bar counts steps; the time is estimated apart.
    assert (at_demo["done"], at_demo["total"], at_demo["percent"]) == (2, 12, 16)


@pytest.fixture
def demo_app(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    portal_sandbox: Any,
    tmp_path: Path,
) -> Iterator[Flask]:
    """The portal configured as the demo runs it (vendor clock 60x)."""
    settings = portal_settings(db_url, portal_sandbox.url, tmp_path, vendor_time_scale=DEMO_SCALE)
    app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
    yield app
    app.extensions["portal_db"].dispose()


def test_the_page_and_its_json_use_the_configured_clock(demo_app: Flask, started: Any) -> None:
    client = demo_app.test_client()
    client.post("/auth/login", data={"email": started.email, "password": PASSWORD})
    data = client.get("/progress.json").json
    assert 0 < data["remaining_s"] <= 2 * 60
    page = client.get("/progress").get_data(as_text=True)
    assert "2 of 12 steps done" in page
    assert f"about {duration(data['remaining_s'])}</span>" in page
