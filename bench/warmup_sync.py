"""Warmup sync at scale: N active provisions x 20 mailboxes against PlusVibe's 5 requests/s.

Stack (bench/stack.py): PostgreSQL for the app and for Prefect, a real `prefect server`, a
process worker running prefect.yaml's deployments, and the sandbox at 150 ms +- 50 ms per call
with PlusVibe's rate limit on. The sandbox's control plane seeds one PlusVibe workspace per
provision with its mailboxes warming up; the app DB gets the matching active provisions. The
sync deployment is then started once (its schedule is paused so nothing else runs).

Bound = calls needed (one listing per workspace page) / 5 per second. Wall = the flow run's own
start-to-end time; end-to-end (including the worker picking the run up) is reported too, and so
are the 429s the sandbox answered (``rate_limited``: each costs a slot and a wait of 1 s or more).

Usage: python bench/warmup_sync.py [--provisions 500]. Last line: RESULT provisions=... .
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import UTC
from datetime import datetime
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter
from prefect.client.schemas.filters import DeploymentFilterId
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.filters import FlowRunFilterState
from prefect.client.schemas.filters import FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.settings import temporary_settings
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from stack import StackOptions
from stack import running_stack
from stack import stop_on_sigterm
from stack import write_result

from core.db import session_scope
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import Tier
from core.models import User
from core.models import WarmupSnapshot
from tasks.limits import PLUSVIBE

DEPLOYMENT = "sync-warmup/every-15-minutes"
VENDOR_RATE = 5.0  # PlusVibe's documented ~5 requests/s: the physical limit
PAGE_SIZE = 100  # accounts per /account/list page
SEED_CHUNK = 100
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def seed(stack: Any, provisions: int, mailboxes: int) -> None:
    """PlusVibe workspaces warming up in the sandbox, and the active provisions that own them."""
    per_domain = 2
    domains = math.ceil(mailboxes / per_domain)
    specs = []
    for index in range(provisions):
        emails = [
            f"s{box % per_domain}@b{index}d{box // per_domain}.com" for box in range(mailboxes)
        ]
        # A spread of warmup ages, so labels come out warming, watch and healthy alike.
        specs.append({"name": f"bench{index}", "emails": emails, "warmup_days": index % 40})
    workspace_ids: list[str] = []
    for start in range(0, len(specs), SEED_CHUNK):
        response = stack.sandbox.control(
            "POST", "/plusvibe/seed", json={"workspaces": specs[start : start + SEED_CHUNK]}
        )
        response.raise_for_status()
        workspace_ids += [w["workspace_id"] for w in response.json()["workspaces"]]
    with session_scope(stack.factory) as session:
        tier = session.scalar(select(Tier).where(Tier.slug == "scale"))
        assert tier is not None
        user_ids = session.scalars(
            insert(User).returning(User.id),
            [
                {"email": f"bench{i}@student.test", "name": "Tim Keen", "password_hash": "x"}
                for i in range(provisions)
            ],
        ).all()
        provision_ids = session.scalars(
            insert(Provision).returning(Provision.id),
            [
                {
                    "user_id": user_id,
                    "tier_id": tier.id,
                    "status": "active",
                    "sender_first_name": "Tim",
                    "sender_last_name": "Keen",
                    "username_patterns": ["s0", "s1"],
                    "plusvibe_workspace_id": workspace_ids[i],
                }
                for i, user_id in enumerate(user_ids)
            ],
        ).all()
        domain_rows = [
            {
                "provision_id": pid,
                "name": f"b{i}d{d}.com",
                "status": "ACTIVE",
                "purchase_state": "purchased",
            }
            for i, pid in enumerate(provision_ids)
            for d in range(domains)
        ]
        domain_ids = session.scalars(insert(Domain).returning(Domain.id), domain_rows).all()
        session.execute(
            insert(Mailbox),
            [
                {
                    "domain_id": domain_ids[i * domains + box // per_domain],
                    "address": f"s{box % per_domain}@b{i}d{box // per_domain}.com",
                    "username": f"s{box % per_domain}",
                    "first_name": "Tim",
                    "last_name": "Keen",
                }
                for i in range(provisions)
                for box in range(mailboxes)
            ],
        )


def quiet_schedule() -> None:
    """Pause the sync's schedule and drop its scheduled runs: only the measured run may sync."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        client.pause_deployment(deployment.id)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
        for run in runs:
            if run.state and run.state.type in (StateType.SCHEDULED, StateType.PENDING):
                client.delete_flow_run(run.id)
        busy = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                )
            ),
        )
        if busy:
            raise RuntimeError("a scheduled sync started before the schedule was paused")


def set_plusvibe_rate(rate: float) -> None:
    """Recreate the PlusVibe limit at another pace (what-if runs; the product uses PLUSVIBE)."""
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(PLUSVIBE.name)
        client.upsert_global_concurrency_limit_by_name(
            PLUSVIBE.name, PLUSVIBE.limit, slot_decay_per_second=rate
        )


def measure(args: argparse.Namespace, stack: Any) -> dict[str, Any]:
    stack.sandbox.control("POST", "/stats/reset")
    started = time.monotonic()
    run = run_deployment(
        DEPLOYMENT,
        parameters={"batch_size": args.batch_size, "parallel": args.parallel},
        timeout=0,
    )
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            if run.state and run.state.type in FINAL:
                break
            if time.monotonic() - started > args.timeout_s:
                raise TimeoutError(f"sync not finished after {args.timeout_s}s")
            time.sleep(0.2)
    end_to_end = time.monotonic() - started
    if not run.state.is_completed():
        raise RuntimeError(f"sync ended {run.state.type.value}: {run.state.message}")
    wall = (run.end_time - run.start_time).total_seconds()
    plusvibe = stack.sandbox.stats()["vendors"].get("plusvibe", {"total": 0, "rate_limited": 0})
    listings = sum(plusvibe["routes"].get("GET /account/list", {}).values())
    today = datetime.now(UTC).date()
    with session_scope(stack.factory) as session:
        snapshots = session.scalar(
            select(func.count()).select_from(WarmupSnapshot).where(WarmupSnapshot.day == today)
        )
        labelled = session.scalar(
            select(func.count()).select_from(Mailbox).where(Mailbox.health_label.is_not(None))
        )
        labels = dict(
            session.execute(
                select(Mailbox.health_label, func.count()).group_by(Mailbox.health_label)
            ).all()
        )
    needed = args.provisions * math.ceil(args.mailboxes / PAGE_SIZE)
    bound = needed / VENDOR_RATE
    return {
        "wall_s": round(wall, 2),
        "end_to_end_s": round(end_to_end, 2),
        "bound_s": round(bound, 2),
        "ratio": round(wall / bound, 3),
        "calls_needed": needed,
        "plusvibe_calls": plusvibe["total"],
        "listing_calls": listings,
        "rate_limited_429": plusvibe["rate_limited"],
        "snapshots_written": snapshots,
        "mailboxes_labelled": labelled,
        "labels": {str(k): v for k, v in labels.items()},
    }


def main() -> None:
    """Run the benchmark and print its RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provisions", type=int, default=500)
    parser.add_argument("--mailboxes", type=int, default=20, help="mailboxes per provision")
    parser.add_argument("--batch-size", type=int, default=10, help="provisions per batch task")
    parser.add_argument("--parallel", type=int, default=4, help="batches in flight")
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--jitter-ms", type=float, default=50)
    parser.add_argument(
        "--plusvibe-rate",
        type=float,
        default=None,
        help=f"what-if pace of our PlusVibe limit (product: {PLUSVIBE.rate}/s)",
    )
    parser.add_argument("--timeout-s", type=float, default=1800)
    args = parser.parse_args()
    stop_on_sigterm()

    options = StackOptions(
        portal=False,
        worker_limit=2,
        sandbox_args=["--latency-ms", str(args.latency_ms), "--jitter-ms", str(args.jitter_ms)],
    )
    # The machine is shared: the load around the run says how far its wall time can be trusted.
    load_before = os.getloadavg()[0]
    with running_stack("bench_warmup_sync", options) as stack:
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            quiet_schedule()
            if args.plusvibe_rate:
                set_plusvibe_rate(args.plusvibe_rate)
            seeded = time.monotonic()
            seed(stack, args.provisions, args.mailboxes)
            seed_s = time.monotonic() - seeded
            figures = measure(args, stack)
    sys.stdout.write(f"seeded in {seed_s:.1f}s; {figures}\n")
    write_result(
        "warmup_sync",
        {
            "settings": vars(args),
            "plusvibe_limit_rate": args.plusvibe_rate or PLUSVIBE.rate,
            "vendor_rate": VENDOR_RATE,
            "load_avg_1m": {"before": load_before, "after": os.getloadavg()[0]},
            "figures": figures,
        },
        {
            "provisions": args.provisions,
            "wall_s": figures["wall_s"],
            "bound_s": figures["bound_s"],
            "ratio": figures["ratio"],
            "calls": figures["plusvibe_calls"],
            "rate_limited": figures["rate_limited_429"],
        },
    )


if __name__ == "__main__":
    main()
