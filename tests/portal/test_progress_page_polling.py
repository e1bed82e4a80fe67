"""The progress page in Chromium: it polls with If-None-Match, keeps its clock running through
304s and shows a step change on the next poll."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from core.db import utcnow
from portal import create_app
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import set_steps
from tests.portal.conftest import portal_settings
from tests.support.databases import IN_CI

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
RUNNING = {"zapmail_workspace": "completed", "buy_domains": "running"}


@pytest.fixture
def live_url(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    tmp_path: Path,
) -> Iterator[str]:
    """The portal served on a free loopback port (no vendor is called by these pages)."""
    app = create_app(portal_settings(db_url, "http://127.0.0.1:9", tmp_path))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["portal_db"].dispose()


@pytest.fixture
def page() -> Iterator[Any]:
    """A page in headless Debian Chromium (never a downloaded browser)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.set_default_timeout(15000)
            yield tab
        finally:
            browser.close()


def _seconds(meta: str) -> int:
    match = re.search(r"for (\d+) s", meta)
    assert match, meta
    return int(match.group(1))


def test_page_polls_conditionally_and_stays_truthful(
    live_url: str, page: Any, session: Session
) -> None:
    user = make_user(session, "ann@example.com")
    provision = make_provision(
        session, user, status="provisioning", paid_at=utcnow() - timedelta(minutes=3)
    )
    set_steps(session, provision, RUNNING)
    # Started 20 s ago: the page shows its time in seconds, so the clock is visible.
    session.flush()
    for row in provision.steps:
        if row.step_key == "buy_domains":
            row.started_at = utcnow() - timedelta(seconds=20)
    session.commit()

    polls: list[tuple[int, str | None]] = []
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            polls.append((r.status, r.request.headers.get("if-none-match")))
            if r.url.endswith("/progress.json")
            else None
        ),
    )
    page.goto(f"{live_url}/auth/login")
    page.fill("input[name=email]", "ann@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.goto(f"{live_url}/progress")

    meta = page.locator("li.tl-running .tl-meta")
    page.wait_for_timeout(500)
    first = _seconds(meta.inner_text())
    # Two more polls: answered 304, yet the running step's time keeps moving.
    deadline = time.monotonic() + 15
    while sum(1 for status, _ in polls if status == 304) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    # Every poll sent with the last ETag is answered 304; a page's first poll (no tag yet; the
    # sign-in's own redirect may have opened the page once already) is a full answer.
    conditional = [(status, tag) for status, tag in polls if tag]
    assert len(conditional) >= 2 and all(status == 304 for status, _ in conditional), polls
    assert all(tag.startswith('W/"') for _, tag in conditional)
    assert all(status == 200 for status, tag in polls if not tag), polls
    assert _seconds(meta.inner_text()) >= first + 3

    # A step finishes: the next poll is a full answer and the page shows it.
    set_steps(
        session, provision, {**RUNNING, "buy_domains": "completed", "wait_domains": "running"}
    )
    session.commit()
    page.locator("#progress-done", has_text="2 of 12 steps done").wait_for(timeout=10000)
    assert "Domains go live" in page.inner_text("li.tl-running")
    assert polls[-1][0] == 200
    assert not problems
