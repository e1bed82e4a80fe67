"""`make demo`'s launcher end to end: start it, buy a package in the browser, reach active, stop.

The launcher is started as a newcomer would (``python -m deployments.demo``) on a fresh instance
folder and free ports; only the sandbox clock runs faster than in the real demo.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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
from deployments.local import PROJECT_ROOT
from deployments.local import free_port
from tests.e2e.journey import buy_through_wizard
from tests.support.worker import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.prefect]


class Output:
    """Collects a child's output lines on a thread, so reading never blocks the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self, process: subprocess.Popen[str]) -> None:
        """Wait for the last line and close the pipe."""
        self._thread.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()

    def value(self, prefix: str) -> str:
        """The rest of the first line that starts with ``prefix``."""
        return next(line[len(prefix) :] for line in self.lines if line.startswith(prefix))


def _demo_processes(instance: Path) -> list[int]:
    """Pids of live processes started for this demo (they all carry its instance folder)."""
    marker = f"APP_INSTANCE_DIR={instance}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return found


def test_demo_starts_provisions_one_purchase_and_stops_cleanly(
    browser: Any, shoot: Any, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    ports = {name: free_port() for name in ("portal", "sandbox", "prefect")}
    portal = f"http://127.0.0.1:{ports['portal']}"
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    env.update(
        APP_INSTANCE_DIR=str(instance),
        APP_PUBLIC_URL=portal,
        APP_SANDBOX_URL=sandbox,
        APP_PREFECT_API_URL=f"http://127.0.0.1:{ports['prefect']}/api",
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "deployments.demo", "--sandbox-speed", "600"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(demo)
    try:
        wait_for(
            lambda: "Press Ctrl-C to stop." in output.lines or demo.poll() is not None,
            timeout_s=240,
            what="the demo to start",
        )
        assert demo.poll() is None, "\n".join(output.lines)
        assert output.value("Portal: ") == portal
        prefect_ui = output.value("Prefect UI: ")
        assert httpx.get(prefect_ui, timeout=10).status_code == 200
        student_email, student_password = DEMO_LOGINS[1][0], DEMO_LOGINS[1][1]
        assert f"Login (student): {student_email} / {student_password}" in output.lines

        page = browser.new_page()
        chosen = buy_through_wizard(
            page,
            portal,
            SimpleNamespace(stripe_url=f"{sandbox}/stripe"),
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
        page.goto(f"{portal}/dashboard")
        assert chosen[0] in page.inner_text("body")
        shoot(page, "demo-dashboard")
    finally:
        # Ctrl-C in the terminal: the launcher stops everything it started.
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=90)
        output.close(demo)
    assert code == 0, "\n".join(output.lines)
    assert output.lines[-1] == "Stopped."
    deadline = time.monotonic() + 10
    while _demo_processes(instance) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _demo_processes(instance) == []
    for name, port in ports.items():
        require_free(port, name, "-")
