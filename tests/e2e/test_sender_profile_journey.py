"""The sender profile in headless Chromium, on the real worker and the Zapmail sandbox.

An active student opens their sender profile from the dashboard, is refused a picture that is
too small (the reason next to the field), uploads a good one with corrected names, and sees the
request pending, then applied once the real sender-profile run has finished. Zapmail then lists
the names and the picture's address on every mailbox, usernames unchanged, and that address
serves the uploaded picture.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.orm import Session

from core.settings import Settings
from tests.factories import PASSWORD
from tests.support.pictures import png
from tests.support.worker import wait_for
from tests.support.zapmail_world import active_provision

pytestmark = [pytest.mark.browser, pytest.mark.prefect]

EMAIL = "sam@student.test"


def test_upload_a_picture_and_new_names_and_see_them_applied(
    real_portal: Any, browser: Any, shoot: Any, session: Session, sandbox: Any
) -> None:
    _app, url = real_portal
    settings = Settings(env="test", sandbox_url=sandbox.url, _env_file=None)
    provision = active_provision(session, settings, email=EMAIL)
    workspace = provision.zapmail_workspace_id
    picture = png(240, 240)

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/auth/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{url}/dashboard")
    page.click("a:has-text('Sender profile')")
    page.wait_for_url(f"{url}/dashboard/profile")
    state = page.locator("#profile-state")
    assert "Your mailboxes send as Tim Keen, without a picture." in state.inner_text()
    shoot(page, "profile-01-before")

    # Too small: refused next to the field, nothing saved.
    page.set_input_files(
        "input[name=picture]",
        {"name": "tiny.png", "mimeType": "image/png", "buffer": png(64, 64)},
    )
    page.click("button:has-text('Save and apply to every mailbox')")
    field = page.locator("label.field:has(input[name=picture])")
    assert "The picture is 64 x 64 pixels; it needs at least 96 x 96." in field.inner_text()
    assert "without a picture" in state.inner_text()
    shoot(page, "profile-02-refused")

    page.fill("input[name=first_name]", "Jordan")
    page.fill("input[name=last_name]", "Reyes")
    page.set_input_files(
        "input[name=picture]", {"name": "me.png", "mimeType": "image/png", "buffer": picture}
    )
    page.click("button:has-text('Save and apply to every mailbox')")
    page.wait_for_url(f"{url}/dashboard/profile")
    assert "Saved. Your mailboxes are being updated" in page.inner_text(".flashes")
    shoot(page, "profile-03-pending")

    def applied() -> bool:
        page.reload()
        return "Applied to every mailbox on" in state.inner_text()

    wait_for(applied, timeout_s=120, what="the page to say the profile is applied", every_s=1.0)
    text = state.inner_text()
    assert "Jordan Reyes" in text and "Pending" not in text
    width = page.eval_on_selector("#profile-state img", "img => img.naturalWidth")
    assert width == 240, "the uploaded picture is shown"
    shoot(page, "profile-04-applied")

    # What Zapmail holds: the names and the picture's address on all six, usernames unchanged.
    listed = httpx.get(
        f"{sandbox.zapmail_url}/v2/mailboxes/list",
        headers={"x-auth-zapmail": "sandbox-zapmail-key", "x-workspace-key": workspace},
        timeout=10,
    ).json()["data"]["domains"]
    rows = [m for d in listed for m in d["mailboxes"]]
    assert len(rows) == 6
    assert {(m["firstName"], m["lastName"]) for m in rows} == {("Jordan", "Reyes")}
    assert sorted({m["username"] for m in rows}) == ["tim", "tim.keen"]
    assert sandbox.ledger(kind="mailbox_username_changed") == []
    (address,) = {m["profilePicture"] for m in rows}
    served = httpx.get(f"{url}{urlsplit(address).path}?{urlsplit(address).query}", timeout=10)
    assert served.status_code == 200 and served.content == picture
