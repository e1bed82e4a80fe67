"""`make demo`'s launcher end to end: start it, buy a package in the browser, reach active, stop.

The launcher is started as a newcomer would (``python -m deployments.demo``) on a fresh instance
folder and free ports; only the sandbox clock runs faster than in the real demo.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import make_engine
from core.models import Provision
from core.models import ProvisionStatus
from deployments.demo import DEMO_LOGINS
from deployments.demo import require_free
from tests.e2e.demo_process import demo_processes
from tests.e2e.demo_process import running_demo
from tests.e2e.journey import buy_through_wizard
from tests.support.worker import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.prefect]


def test_demo_starts_provisions_one_purchase_and_stops_cleanly(
    browser: Any, shoot: Any, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    with running_demo(instance, speed=600) as demo:
        assert demo.output.value("Portal: ") == demo.portal
        prefect_ui = demo.output.value("Prefect UI: ")
        assert httpx.get(prefect_ui, timeout=10).status_code == 200
        student_email, student_password = DEMO_LOGINS[1][0], DEMO_LOGINS[1][1]
        assert f"Login (student): {student_email} / {student_password}" in demo.output.lines

        page = browser.new_page()
        chosen = buy_through_wizard(
            page,
            demo.portal,
            SimpleNamespace(stripe_url=f"{demo.sandbox}/stripe"),
            shoot,
            email=student_email,
            password=student_password,
            prefix="demo-",
        )
        engine = make_engine(f"sqlite:///{instance / 'app.db'}")
        try:

            def status() -> str | None:
                with engine.connect() as connection:
                    return connection.scalar(select(Provision.status))

            wait_for(
                lambda: status() in (ProvisionStatus.ACTIVE, ProvisionStatus.FAILED),
                timeout_s=300,
                what="the demo purchase to finish provisioning",
                every_s=1.0,
            )
            assert status() == ProvisionStatus.ACTIVE
        finally:
            engine.dispose()
        page.goto(f"{demo.portal}/dashboard")
        assert chosen[0] in page.inner_text("body")
        shoot(page, "demo-dashboard")

        # Ctrl-C in the terminal: the launcher stops everything it started.
        code = demo.stop(signal.SIGINT, timeout_s=90)
    assert code == 0, "\n".join(demo.output.lines)
    assert demo.output.lines[-1] == "Stopped."
    deadline = time.monotonic() + 10
    while demo_processes(instance) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert demo_processes(instance) == []
    for name, port in demo.ports.items():
        require_free(port, name, "-")
