"""One provision at a time on the full stack: payment -> active, against the vendors' own bound.

Stack: PostgreSQL (app DB and Prefect's), a real `prefect server`, a process worker running
prefect.yaml's deployments, and the sandbox with a latency model (150 ms +- 50 ms per call) and
fixed activation delays. Each run starts the way the Stripe webhook starts it (run_deployment)
and is timed until the app DB says "active".

The vendor critical path is what no orchestration can beat: the activation delays plus the
sequential vendor calls of one provision, each at least one latency, Zapmail's additionally
paced at its rate limit. Overhead = wall - critical path.

Usage: python bench/provision_latency.py [--runs 3]. Last line: RESULT overhead_s=... .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.settings import temporary_settings
from sqlalchemy import select
from stack import RESULTS
from stack import drop_database
from stack import fresh_database
from stack import machine

from core import migrate
from core.crud import seed_default_tiers
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from core.models import Domain
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.models import User
from deployments.local import PROJECT_ROOT
from deployments.local import free_port
from deployments.local import start_prefect_server
from deployments.local import start_worker
from deployments.local import stop
from deployments.local import wait_healthy
from sandbox.testing import running_sandbox
from tasks.limits import ZAPMAIL


def paid_provision(factory: Any, sandbox_url: str, index: int) -> tuple[int, list[str]]:
    """What a paid checkout leaves behind: a provisioning order with three free domains."""
    candidates = [f"latencybench{index}x{i}.com" for i in range(20)]
    rows = httpx.post(
        f"{sandbox_url}/zapmail/api/v2/domains/available-bulk",
        json={"domainNames": candidates},
        headers={"x-auth-zapmail": "sandbox-zapmail-key"},
        timeout=30,
    ).json()["data"]["domains"]
    names = [r["domainName"] for r in rows if r["status"] == "AVAILABLE"][:3]
    with session_scope(factory) as session:
        tier = session.scalar(select(Tier).where(Tier.slug == "starter"))
        user = User(email=f"bench{index}@student.test", name="Tim Keen", password_hash="x")
        provision = Provision(
            user=user,
            tier=tier,
            status="provisioning",
            sender_first_name="Tim",
            sender_last_name="Keen",
            username_patterns=["{first}", "{first}.{last}"],
            paid_at=datetime.now(UTC),
        )
        session.add(provision)
        for name in names:
            session.add(Domain(provision=provision, name=name))
        session.flush()
        return provision.id, names


def wait_active(factory: Any, provision_id: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope(factory) as session:
            status = session.get(Provision, provision_id).status
        if status == "active":
            return
        if status == "failed":
            raise RuntimeError(f"provision {provision_id} failed")
        time.sleep(0.1)
    raise TimeoutError(f"provision {provision_id} not active after {timeout_s}s")


def step_checks(factory: Any, provision_id: int) -> dict[str, int]:
    with session_scope(factory) as session:
        steps = session.scalars(
            select(ProvisioningStep).where(ProvisioningStep.provision_id == provision_id)
        )
        return {s.step_key: int((s.details or {}).get("checks", 0)) for s in steps}


def one_run(args: argparse.Namespace, factory: Any, sandbox: Any, index: int) -> dict[str, Any]:
    provision_id, names = paid_provision(factory, sandbox.url, index)
    sandbox.control("POST", "/stats/reset")
    started = time.monotonic()
    run_deployment("provision/on-demand", parameters={"provision_id": provision_id}, timeout=0)
    wait_active(factory, provision_id)
    wall = time.monotonic() - started

    vendors = sandbox.stats()["vendors"]
    checks = step_checks(factory, provision_id)
    zap_polls = checks.get("wait_domains", 0) + checks.get("wait_mailboxes", 0)
    pv_polls = checks.get("connect_plusvibe", 0)
    zap = vendors["zapmail"]["total"] - zap_polls
    other = vendors["plusvibe"]["total"] - pv_polls + vendors["heyreach"]["total"]
    latency = args.latency_ms / 1000
    zapmail_path = max(zap * latency, (zap - 1) / ZAPMAIL.rate)
    delays = args.domain_s + args.mailbox_s + args.export_s
    critical = delays + zapmail_path + other * latency
    charges = Counter(
        e["item"] for e in sandbox.ledger(kind="domain_purchase") if e["item"] in names
    )
    return {
        "provision_id": provision_id,
        "wall_s": round(wall, 2),
        "critical_path_s": round(critical, 2),
        "overhead_s": round(wall - critical, 2),
        "zapmail_calls": zap,
        "zapmail_status_polls": zap_polls,
        "plusvibe_calls": vendors["plusvibe"]["total"] - pv_polls,
        "plusvibe_status_polls": pv_polls,
        "heyreach_calls": vendors["heyreach"]["total"],
        "rate_limited_429": sandbox.stats()["rate_limited"],
        "double_charges": sum(n - 1 for n in charges.values() if n > 1),
    }


def main() -> None:
    """Run the benchmark and print its RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--jitter-ms", type=float, default=50)
    parser.add_argument("--domain-s", type=float, default=20, help="domain activation delay")
    parser.add_argument("--mailbox-s", type=float, default=25, help="mailbox activation delay")
    parser.add_argument("--export-s", type=float, default=10, help="export to PlusVibe delay")
    args = parser.parse_args()

    tag = f"bench_latency_{os.getpid()}"
    app_url = fresh_database(f"{tag}_app")
    prefect_url = fresh_database(f"{tag}_prefect")
    work = Path(tempfile.mkdtemp(prefix="provision-latency-"))
    migrate.upgrade(app_url)
    engine = make_engine(app_url)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        seed_default_tiers(session=session)

    sandbox_args = [
        "--latency-ms",
        str(args.latency_ms),
        "--jitter-ms",
        str(args.jitter_ms),
        "--domain-activation-s",
        str(args.domain_s),
        "--mailbox-activation-s",
        str(args.mailbox_s),
        "--export-delay-s",
        str(args.export_s),
    ]
    port = free_port()
    server = start_prefect_server(
        database_url=prefect_url, home=work, port=port, log=work / "server.log"
    )
    api = f"http://127.0.0.1:{port}/api"
    worker = None
    runs: list[dict[str, Any]] = []
    try:
        wait_healthy(f"{api}/health", server)
        with (
            running_sandbox(extra_args=sandbox_args) as sandbox,
            temporary_settings({PREFECT_API_URL: api}),
        ):
            env = {
                "PREFECT_API_URL": api,
                "PREFECT_HOME": str(work),
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(work / "results"),
                "APP_ENV": "dev",
                "APP_DATABASE_URL": app_url,
                "APP_SANDBOX_URL": sandbox.url,
                "APP_INSTANCE_DIR": str(work),
                "APP_WAIT_POLL_S": "1",
                "APP_DIR": str(PROJECT_ROOT),
            }
            subprocess.run(
                [sys.executable, "-m", "deployments.setup"],
                cwd=PROJECT_ROOT,
                env={**os.environ, **env},
                check=True,
            )
            worker = start_worker(env=env, log=work / "worker.log")
            for index in range(args.runs):
                runs.append(one_run(args, factory, sandbox, index))
                sys.stdout.write(json.dumps(runs[-1]) + "\n")
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
        engine.dispose()
        drop_database(f"{tag}_app")
        drop_database(f"{tag}_prefect")

    summary = {
        "benchmark": "provision_latency",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "command": "python bench/provision_latency.py " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "runs": runs,
        "overhead_s_median": statistics.median(r["overhead_s"] for r in runs),
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "critical_path_s": statistics.median(r["critical_path_s"] for r in runs),
        "zapmail_calls": max(r["zapmail_calls"] for r in runs),
        "status_polls": max(r["zapmail_status_polls"] for r in runs),
        "double_charges": sum(r["double_charges"] for r in runs),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "provision_latency.json").write_text(json.dumps(summary, indent=2) + "\n")
    sys.stdout.write(
        f"RESULT overhead_s={summary['overhead_s_median']} wall_s={summary['wall_s_median']} "
        f"critical_path_s={summary['critical_path_s']} zapmail_calls={summary['zapmail_calls']} "
        f"status_polls={summary['status_polls']} double_charges={summary['double_charges']}\n"
    )


if __name__ == "__main__":
    main()
