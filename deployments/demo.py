"""``make demo``: the whole product on embedded defaults, on one machine, until Ctrl-C.

It migrates and seeds the SQLite app DB, creates the demo logins, then starts the sandbox
vendors, a local Prefect server (SQLite, with its UI), sets the server up (work pool, rate
limits, blocks, automation, deployments), starts a process worker and the portal under
gunicorn, and prints where everything is. Ctrl-C stops every process it started; the app DB,
Prefect's DB and the task results persist under the instance folder for the next run.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core import migrate
from core.crud import seed_default_tiers
from core.crud import upsert_user
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from core.models import Role
from core.settings import Settings
from core.settings import get_settings
from deployments import local

DEMO_LOGINS = (
    ("admin@demo.local", "demo-admin-password", Role.ADMIN, "Demo Admin"),
    ("student@demo.local", "demo-student-password", Role.STUDENT, "Demo Student"),
)
DEFAULT_PREFECT_API_URL = "http://127.0.0.1:4200/api"
# Vendor time runs 60x faster: domains activate in 15 s, mailboxes in 60 s, so a purchase
# reaches "active" in about two minutes.
DEMO_SANDBOX_SPEED = 60
# Waits poll every 3 s and stay in-process for up to 75 s (the demo's waits are shorter, so the
# run never needs the every-minute sweeper to resume it and finishes sooner).
DEMO_WAITS = {"APP_WAIT_POLL_S": "3", "APP_WAIT_INLINE_S": "75"}
# Per service: SIGTERM, then SIGKILL for what is left of its process group. Above the worker
# launcher's own grace for its runs (deployments/launcher.py), so runs end as crashed first.
STOP_GRACE_S = 15


class DemoError(RuntimeError):
    """The demo cannot start (a port is taken, a service failed); the message says what to do."""


@dataclass
class Service:
    """A child process of the demo and how to tell it is ready."""

    name: str
    start: Callable[[Path], subprocess.Popen[bytes]]
    ready_url: str
    process: subprocess.Popen[bytes] | None = None


def say(message: str) -> None:
    """Print one line at once (the launcher's output is read by people and by the smoke test)."""
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


def port_of(url: str) -> int:
    """The TCP port of an http URL (80 when it names none)."""
    return urlsplit(url).port or 80


def require_free(port: int, what: str, variable: str) -> None:
    """Fail with the fix when ``port`` is taken, before anything is started."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} for the {what} is in use (another demo running?); "
                f"stop it or set {variable} to another port"
            ) from None


def child_env(settings: Settings, prefect_api_url: str, speed: float = 1.0) -> dict[str, str]:
    """The environment every child shares: the app settings, where Prefect is, the vendor clock."""
    prefect_home = settings.instance_dir / "prefect"
    return {
        "APP_ENV": settings.env,
        "APP_INSTANCE_DIR": str(settings.instance_dir),
        "APP_DATABASE_URL": settings.database_url,
        "APP_PUBLIC_URL": settings.public_url,
        "APP_SANDBOX_URL": settings.sandbox_url,
        "APP_PREFECT_API_URL": prefect_api_url,
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_HOME": str(prefect_home),
        # Shared by every run so a retry from the Prefect UI finds the cached steps.
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_home / "results"),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "APP_DIR": str(local.PROJECT_ROOT),
        **DEMO_WAITS,
        # The sandbox's vendors run `speed` times faster: the progress page's estimates follow.
        "APP_VENDOR_TIME_SCALE": str(speed),
        # Explicit settings in the caller's environment win over the demo's defaults.
        **{k: v for k, v in os.environ.items() if k.startswith("APP_") and k != "APP_DIR"},
    }


def services(settings: Settings, env: Mapping[str, str], speed: float) -> list[Service]:
    """The product's long-running processes, in start order."""
    public = settings.public_url.rstrip("/")
    prefect_api = env["PREFECT_API_URL"]
    prefect_port = port_of(prefect_api)
    assert settings.stripe_webhook_secret is not None  # dev/test default to the sandbox's
    sandbox_args = [
        "--host", "127.0.0.1",
        "--port", str(port_of(settings.sandbox_url)),
        "--speed", str(speed),
        "--stripe-webhook-url", f"{public}/webhooks/stripe",
        "--stripe-webhook-secret", settings.stripe_webhook_secret.get_secret_value(),
        "--zapmail-webhook-url", f"{public}/webhooks/zapmail",
    ]  # fmt: skip
    return [
        Service(
            "sandbox",
            lambda log: local.spawn(
                [sys.executable, "-m", "sandbox", *sandbox_args], env=env, log=log
            ),
            f"{settings.sandbox_url.rstrip('/')}/_sandbox/health",
        ),
        Service(
            "prefect-server",
            lambda log: local.start_prefect_server(
                database_url=None,
                home=Path(env["PREFECT_HOME"]),
                port=prefect_port,
                log=log,
                ui=True,
            ),
            f"{prefect_api}/health",
        ),
        Service(
            "worker",
            lambda log: local.start_worker(env=env, log=log, limit=10),
            f"{prefect_api}/health",
        ),
        Service(
            "portal",
            lambda log: local.start_portal(env=env, port=port_of(public), log=log),
            f"{public}/healthz",
        ),
    ]


def set_up_prefect(env: Mapping[str, str], log: Path) -> None:
    """Create the work pool, limits, blocks, automation and deployments (idempotent)."""
    # Its own process group, like the services: an interrupt stops `prefect deploy` too.
    process = local.spawn(
        [sys.executable, "-m", "deployments.setup"], env={**os.environ, **env}, log=log
    )
    try:
        code = process.wait()
    finally:
        if process.poll() is None:
            local.stop(process, grace_s=5)
    if code != 0:
        raise DemoError(f"setting up Prefect failed; see {log}")


def stop_all(running: Sequence[Service]) -> None:
    """Stop every started service, newest first, each with its whole process group."""
    # Ignore further Ctrl-C/SIGTERM meanwhile: a second one must not cut the stop short and
    # leave processes behind (each stop is bounded by its grace period anyway).
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in reversed(running):
            if service.process is not None:
                local.stop(service.process, grace_s=STOP_GRACE_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(settings: Settings, *, check: bool = False, speed: float = DEMO_SANDBOX_SPEED) -> None:
    """Start the demo stack; with ``check``, stop it again as soon as everything answers."""
    prefect_api = settings.prefect_api_url or DEFAULT_PREFECT_API_URL
    for url, what, variable in (
        (settings.public_url, "portal", "APP_PUBLIC_URL"),
        (settings.sandbox_url, "sandbox", "APP_SANDBOX_URL"),
        (prefect_api, "Prefect server", "APP_PREFECT_API_URL"),
    ):
        require_free(port_of(url), what, variable)
    log_dir = settings.instance_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings)
    env = child_env(settings, prefect_api, speed)

    running: list[Service] = []
    try:
        for service in services(settings, env, speed):
            if service.name == "worker":
                set_up_prefect(env, log_dir / "setup.log")
            log = log_dir / f"{service.name}.log"
            service.process = service.start(log)
            running.append(service)
            try:
                local.wait_healthy(service.ready_url, service.process, timeout_s=120)
            except RuntimeError as exc:
                raise DemoError(f"the {service.name} did not start ({exc}); see {log}") from None
        say(f"Portal: {settings.public_url}")
        say(f"Prefect UI: {prefect_api.removesuffix('/api')}")
        for email, password, role, _ in DEMO_LOGINS:
            say(f"Login ({role.value}): {email} / {password}")
        say(f"Emails (outbox): {settings.instance_dir / 'outbox'}")
        say(f"Logs: {log_dir}")
        if check:
            return
        say("Press Ctrl-C to stop.")
        while all(s.process is not None and s.process.poll() is None for s in running):
            time.sleep(0.5)
        exited = next(s.name for s in running if s.process and s.process.poll() is not None)
        say(f"The {exited} exited (see {log_dir / exited}.log); stopping the others.")
    finally:
        stop_all(running)
        say("Stopped.")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="start, report, then stop at once")
    parser.add_argument(
        "--sandbox-speed",
        type=float,
        default=DEMO_SANDBOX_SPEED,
        help=f"simulated vendor seconds per second (default {DEMO_SANDBOX_SPEED})",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a process manager, the smoke test) stops the demo like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(get_settings(), check=args.check, speed=args.sandbox_speed)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        say(f"Demo not started: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
