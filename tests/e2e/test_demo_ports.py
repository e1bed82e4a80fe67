"""`make demo` with every port moved: the Prefect UI reads its own server, and SIGTERM ends it all.

With the ports moved through the README's variables, the UI once read 127.0.0.1:4200 (another
server, or none) and the admin page's run link showed "not found"; and a stopped demo once left
flow-run processes alive. Here a student buys a package, and while its run waits in-process for
the (slow) vendor clock: the UI's settings name the moved API, its runs page and the admin page's
run link show that run, and SIGTERM to the demo ends every process it started, the run included.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import make_engine
from core.models import Provision
from core.models import ProvisioningStep
from core.models import StepStatus
from deployments.demo import DEMO_LOGINS
from deployments.demo import require_free
from tests.e2e.admin_sign_in import enrol
from tests.e2e.demo_process import Demo
from tests.e2e.demo_process import demo_processes
from tests.e2e.demo_process import descendants
from tests.e2e.demo_process import running_demo
from tests.e2e.demo_process import survivors
from tests.e2e.journey import buy_through_wizard
from tests.support.worker import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.prefect]
NO_API = "Can't connect to Server API"


def _waiting_run(demo: Demo) -> tuple[int, str]:
    """Wait until the purchase's run waits in-process for its domains; its provision and run id."""
    engine = make_engine(f"sqlite:///{demo.instance / 'app.db'}")
    try:

        def waiting() -> tuple[int, str] | None:
            with engine.connect() as connection:
                row = connection.execute(
                    select(Provision.id, Provision.current_flow_run_id)
                    .join(ProvisioningStep, ProvisioningStep.provision_id == Provision.id)
                    .where(
                        ProvisioningStep.step_key == "wait_domains",
                        ProvisioningStep.status == StepStatus.WAITING.value,
                    )
                ).first()
            return (row[0], row[1]) if row and row[1] else None

        return wait_for(waiting, timeout_s=240, what="the run to wait for its domains", every_s=1)
    finally:
        engine.dispose()


def _forked_runs(tree: dict[int, str]) -> list[int]:
    """The flow-run processes among ``tree``: children the warm launcher forked (same command)."""
    launchers = [pid for pid, cmd in tree.items() if "-m deployments.launcher" in cmd]
    return sorted(launchers)[1:]  # the first is the launcher itself (the oldest pid)


def test_the_ui_reads_its_own_server_and_sigterm_ends_every_process(
    browser: Any, shoot: Any, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    # Vendor time at real speed and a long in-process wait: the run stays alive meanwhile.
    with running_demo(instance, speed=1, APP_WAIT_INLINE_S="900") as demo:
        ui = demo.output.value("Prefect UI: ")
        assert ui == f"http://127.0.0.1:{demo.ports['prefect']}"
        settings = httpx.get(f"{ui}/ui-settings", timeout=10).json()
        assert settings["api_url"] == demo.prefect_api

        student, student_password = DEMO_LOGINS[1][0], DEMO_LOGINS[1][1]
        page = browser.new_page()
        buy_through_wizard(
            page,
            demo.portal,
            SimpleNamespace(stripe_url=f"{demo.sandbox}/stripe"),
            shoot,
            email=student,
            password=student_password,
            prefix="ports-",
        )
        provision_id, run_id = _waiting_run(demo)
        run_name = httpx.get(f"{demo.prefect_api}/flow_runs/{run_id}", timeout=10).json()["name"]
        assert run_name.startswith(f"provision-{provision_id}-")

        # The UI's runs page lists the run: it reads the moved server, not 127.0.0.1:4200.
        ui_page = browser.new_page()
        ui_page.goto(f"{ui}/runs")
        ui_page.wait_for_selector(f"text={run_name}", timeout=60000)
        assert NO_API not in ui_page.inner_text("body")
        shoot(ui_page, "ports-prefect-ui-runs")

        # The admin page's run link opens that run in the UI.
        admin, admin_password = DEMO_LOGINS[0][0], DEMO_LOGINS[0][1]
        admin_page = browser.new_page()
        admin_page.goto(f"{demo.portal}/auth/login")
        admin_page.fill("input[name=email]", admin)
        admin_page.fill("input[name=password]", admin_password)
        admin_page.click("button:has-text('Sign in')")
        enrol(admin_page)  # an admin's first sign-in enrols the second factor
        admin_page.goto(f"{demo.portal}/admin/provisions/{provision_id}")
        # The step log: the wait shows its time so far and no attempt; every card holds its table.
        waiting = admin_page.inner_text("table.step-log tr:has-text('wait_domains')")
        assert "so far" in waiting and "Waiting" in waiting, waiting
        assert waiting.split("\t")[4].strip() == "—", waiting
        overflowing = admin_page.evaluate(
            "() => [...document.querySelectorAll('.card')]"
            ".filter(card => card.scrollWidth > card.clientWidth + 1)"
            ".map(card => card.querySelector('h2')?.innerText)"
        )
        assert overflowing == []
        shoot(admin_page, "ports-admin-provision")
        with admin_page.expect_popup() as opened:
            admin_page.click(f"a:has-text('{run_id}')")
        run_page = opened.value
        run_page.wait_for_selector(f"text={run_name}", timeout=60000)
        body = run_page.inner_text("body")
        assert NO_API not in body and "not found" not in body.lower()
        shoot(run_page, "ports-prefect-ui-run")

        # SIGTERM (a process manager) while the run is alive in its forked process.
        tree = descendants(demo.process.pid)
        assert _forked_runs(tree), f"no flow-run process is alive: {tree}"
        assert demo.stop(signal.SIGTERM) == 0, "\n".join(demo.output.lines)
        assert demo.output.lines[-1] == "Stopped."
        left = survivors(list(tree), within_s=3)
        assert left == [], {pid: tree[pid] for pid in left}
        assert demo_processes(instance) == []
    for name, port in demo.ports.items():
        require_free(port, name, "-")
