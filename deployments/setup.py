"""Idempotent set-up of a Prefect server for the product: work pool, rate limits, deployments.

Usage: ``python -m deployments.setup [--no-deploy]`` with ``PREFECT_API_URL`` pointing at the
server. Safe to run again after every release: everything is created or updated in place.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from tasks.limits import ensure_limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK_POOL = "outbound-process"


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool the deployments run on, if missing."""
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def deploy_all(project_root: Path = PROJECT_ROOT) -> None:
    """Register every deployment in prefect.yaml (the worker hosts run code from APP_DIR)."""
    env = {**os.environ, "APP_DIR": os.environ.get("APP_DIR", str(project_root))}
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
    parser.add_argument("--no-deploy", action="store_true", help="only the pool and the limits")
    args = parser.parse_args(argv)
    ensure_work_pool()
    ensure_limits()
    if not args.no_deploy:
        deploy_all()


if __name__ == "__main__":
    main()
