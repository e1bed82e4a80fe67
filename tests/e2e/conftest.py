"""End-to-end fixtures: the portal served on loopback, the sandbox delivering webhooks to it,
headless Debian Chromium driven by Playwright, screenshots under test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from core.settings import PROJECT_ROOT
from core.settings import Settings
from portal import create_app
from tests.support.databases import IN_CI

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"


class _Slot:
    """A WSGI app whose target is set once the port (and so the public URL) is known."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@contextmanager
def serving_portal(sandbox: Any, **settings: Any) -> Iterator[tuple[Any, str, Settings]]:
    """Serve the portal on a free loopback port; the sandbox's Stripe posts webhooks to it."""
    slot = _Slot()
    server = make_server("127.0.0.1", 0, slot, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    config = Settings(
        env="test", sandbox_url=sandbox.url, public_url=url, _env_file=None, **settings
    )
    slot.app = create_app(config)
    sandbox.reset(config=True)
    sandbox.configure(stripe_webhook_url=f"{url}/webhooks/stripe")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield slot.app, url, config
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        sandbox.reset(config=True)
        slot.app.extensions["portal_db"].dispose()


@pytest.fixture
def portal(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    sandbox: Any,
    tmp_path: Path,
) -> Iterator[str]:
    """The portal on loopback with no Prefect: runs it decides stay queued in the outbox."""
    with serving_portal(sandbox, database_url=db_url, instance_dir=tmp_path) as (_app, url, _):
        yield url


@pytest.fixture
def live_portal(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    sandbox: Any,
    portal_prefect: str,
    tmp_path: Path,
) -> Iterator[Any]:
    """The portal with stand-in deployments (no worker): runs are created, never executed."""
    with serving_portal(
        sandbox, database_url=db_url, instance_dir=tmp_path, prefect_api_url=portal_prefect
    ) as (app, url, _settings):
        sandbox.configure(rate_limits_enabled=False)
        yield app, url


@pytest.fixture
def real_portal(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    sandbox: Any,
    prefect_api: str,
    tmp_path: Path,
) -> Iterator[Any]:
    """The portal on the real Prefect server, with a worker running the real flows."""
    from tests.support.worker import running_worker

    with serving_portal(
        sandbox,
        database_url=db_url,
        instance_dir=tmp_path,
        prefect_api_url=prefect_api,
        wait_poll_s=0.5,
        wait_inline_s=60.0,
        purchase_settle_s=2.0,
        vendor_timeout_s=5.0,
    ) as (app, url, settings):
        sandbox.configure(domain_activation_s=2.0, mailbox_activation_s=2.0, export_delay_s=2.0)
        home = tmp_path / "worker-home"
        home.mkdir()
        with running_worker(prefect_api, settings, home, tmp_path / "worker-results"):
            yield app, url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (never a downloaded browser)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shoot() -> Any:
    """Save a full-page screenshot as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
