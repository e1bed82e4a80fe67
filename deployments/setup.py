"""Idempotent set-up of a Prefect server for the product.

Creates or updates the work pool, the vendor rate limits, the blocks (the app-DB connector and
the vendor API keys as Secret blocks), the automation that crashes zombie runs (self-hosted
servers have no managed one), and registers every deployment in prefect.yaml.

Usage: ``python -m deployments.setup [--no-deploy]`` with ``PREFECT_API_URL`` pointing at the
server and the same ``APP_*`` environment as the workers. Safe to run after every release.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.system import Secret
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger
from prefect.events.schemas.automations import Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
from prefect_sqlalchemy import ConnectionComponents
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy.engine import make_url

from core.settings import Settings
from core.settings import get_settings
from tasks.limits import ensure_limits
from tasks.runtime import SECRET_BLOCKS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK_POOL = "outbound-process"
APP_DB_BLOCK = "outbound-app-db"
ZOMBIE_AUTOMATION = "Crash zombie flow runs"
# A run that misses this many heartbeats in a row is declared crashed.
MISSED_HEARTBEATS = 3


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool the deployments run on, if missing."""
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def ensure_blocks(settings: Settings) -> list[str]:
    """Write the app-DB connector and the vendor-key Secret blocks; return their names."""
    url = make_url(settings.database_url)
    # Components, not a URL string: Prefect masks a component password, never one inside a URL.
    SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=url.drivername,
            database=url.database or "",
            username=url.username,
            password=url.password,
            host=url.host,
            port=url.port,
        )
    ).save(APP_DB_BLOCK, overwrite=True)
    written = [APP_DB_BLOCK]
    for field, block in SECRET_BLOCKS.items():
        value = getattr(settings, field)
        if value is not None:
            # Block data is stored encrypted by the Prefect server and shown masked in the UI.
            Secret(value=value.get_secret_value()).save(block, overwrite=True)
            written.append(block)
    return written


def zombie_automation() -> Automation:
    """The automation that marks a run crashed when its heartbeats stop (see docs/prefect.md §8)."""
    heartbeat_s = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() or 180
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks flow runs Crashed when their process died without reporting it.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # A suspended run stops its heartbeats on purpose: its Suspended/Paused event counts.
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
                "prefect.flow-run.Suspended",
                "prefect.flow-run.Paused",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED_HEARTBEATS * heartbeat_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message="Marked crashed: the run stopped sending heartbeats.",
            )
        ],
    )


def ensure_zombie_automation() -> None:
    """Create the zombie-run automation, or bring an existing one up to date."""
    wanted = zombie_automation()
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not existing:
            wanted.create()
            return
        for stale in existing[1:]:
            client.delete_automation(stale.id)
    wanted.id = existing[0].id
    wanted.update()


def deploy_all(project_root: Path = PROJECT_ROOT) -> None:
    """Register every deployment in prefect.yaml (the worker hosts run code from APP_DIR)."""
    env = {
        **os.environ,
        "APP_DIR": os.environ.get("APP_DIR", str(project_root)),
        # The interpreter of this installation runs the flows (prefect.yaml's engine command).
        "APP_PYTHON": os.environ.get("APP_PYTHON", sys.executable),
    }
    prefect = Path(sys.executable).with_name("prefect")
    subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=project_root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Set up the Prefect server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-deploy", action="store_true", help="skip `prefect deploy --all`")
    args = parser.parse_args(argv)
    ensure_work_pool()
    ensure_limits()
    ensure_blocks(get_settings())
    ensure_zombie_automation()
    if not args.no_deploy:
        deploy_all()


if __name__ == "__main__":
    main()
