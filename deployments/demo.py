"""``make demo``: set up the embedded defaults and run the product's processes until Ctrl-C.

It migrates and seeds the SQLite app DB, creates the demo logins, starts every process the
product has, prints where to find them, and stops them all on Ctrl-C. Data persists across runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from core import migrate
from core.crud import seed_default_tiers
from core.crud import upsert_user
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from core.models import Role
from core.settings import Settings
from core.settings import get_settings

DEMO_LOGINS = (
    ("admin@demo.local", "demo-admin-password", Role.ADMIN, "Demo Admin"),
    ("student@demo.local", "demo-student-password", Role.STUDENT, "Demo Student"),
)
# Compress vendor time so a provision reaches active in about two minutes.
DEMO_SANDBOX_SPEED = 60


@dataclass
class Service:
    """A long-running child process and the URL that answers once it is ready."""

    name: str
    argv: list[str]
    ready_url: str
    process: subprocess.Popen[bytes] | None = None


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def prepare_database(settings: Settings) -> None:
    """Migrate the app DB, seed tiers and create the demo logins (all idempotent)."""
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            seed_default_tiers(session=session)
            for email, password, role, name in DEMO_LOGINS:
                upsert_user(session=session, email=email, password=password, role=role, name=name)
    finally:
        engine.dispose()


def services(settings: Settings) -> list[Service]:
    """Return the processes that make up the product on embedded defaults."""
    sandbox_port = settings.sandbox_url.rsplit(":", 1)[-1].strip("/")
    return [
        Service(
            "sandbox",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                sandbox_port,
                "--speed",
                str(DEMO_SANDBOX_SPEED),
            ],
            f"{settings.sandbox_url}/_sandbox/health",
        ),
    ]


def start(service: Service, log_dir: Path) -> None:
    """Start ``service`` with its output in a log file and wait until it answers."""
    log = (log_dir / f"{service.name}.log").open("ab")
    # A new session: Ctrl-C in the terminal reaches us, and we stop the children in order.
    service.process = subprocess.Popen(
        service.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited; see {log_dir / service.name}.log")
        try:
            if httpx.get(service.ready_url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} did not become ready; see {log_dir / service.name}.log")


def stop(running: Sequence[Service]) -> None:
    """Stop every started service, newest first, escalating to SIGKILL after 10 s."""
    for service in reversed(running):
        if service.process and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
    for service in reversed(running):
        if service.process:
            try:
                service.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="start, report, then stop at once")
    args = parser.parse_args(argv)

    settings = get_settings()
    log_dir = settings.instance_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings)

    running: list[Service] = []
    try:
        for service in services(settings):
            running.append(service)
            start(service, log_dir)
        _say(f"Sandbox: {settings.sandbox_url}")
        for email, password, role, _ in DEMO_LOGINS:
            _say(f"Login ({role.value}): {email} / {password}")
        _say(f"Logs: {log_dir}")
        if args.check:
            return
        _say("Press Ctrl-C to stop.")
        while all(s.process and s.process.poll() is None for s in running):
            time.sleep(0.5)
        _say("a service exited; stopping the others")
    except KeyboardInterrupt:
        _say("stopping")
    finally:
        stop(running)


if __name__ == "__main__":
    main()
