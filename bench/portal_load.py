"""Portal under polling load: progress.json, the dashboard page and /healthz as the ceiling.

The portal runs under gunicorn (deployments.local.start_portal) on PostgreSQL with N students,
each with an active Starter provision (3 domains, 6 mailboxes, 11 finished steps) and 30 days of
warmup snapshots per mailbox. Every student signs in through the portal; a separate process
(bench/loadgen.py) then drives the endpoints at fixed rates (open loop, latency from each
request's due time) and at saturation (closed loop) for the throughput ceilings.

progress.json is polled the way the progress page polls it (portal/static/app.js): each student's
client sends back the ETag of its last answer in If-None-Match, and the portal answers 304 with no
body while nothing but the clock has moved. Here every provision is active and unchanging, so after
the warm-up nearly every poll is a 304, as for a page left open between step changes; the phases
report those as ``not_modified``. ``--unconditional`` polls without If-None-Match (every answer a
full 200 document), the cost of a page that has no tag yet or of a step that just changed.

The app DB is PostgreSQL, so each portal worker runs its change listener (portal/change_listener.py):
once a worker has read a student's tag and session, that student's unchanged 304s read nothing
from the database until a notice says otherwise (each worker reads each student once, during the
warm-up or the first phases).

Usage: python bench/portal_load.py [--students 200] [--duration-s 10] [--unconditional].
Last line: RESULT progress_p99_ms=... progress_rps=... dashboard_p99_ms=... trivial_rps=... .
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from stack import MemorySampler
from stack import StackOptions
from stack import cpu_seconds
from stack import csrf_token
from stack import running_stack
from stack import stop_on_sigterm
from stack import write_result

from core.db import session_scope
from core.db import utcnow
from core.mailboxes import render_username
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.models import User
from core.models import WarmupSnapshot
from core.passwords import hash_password
from core.pipeline import PROVISION_STEPS

PASSWORD = "portal-load-password"
USER_AGENT = "bench-portal-load/1"
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
PATTERNS = ("{first}", "{first}.{last}")


def seed(factory: Any, students: int, days: int) -> list[str]:
    """Active provisions with their steps, domains, mailboxes and ``days`` of snapshots."""
    rng = random.Random(7)
    password_hash = hash_password(PASSWORD)
    now = utcnow()
    today = now.date()
    emails = []
    with session_scope(factory) as session:
        tier = session.scalar(select(Tier).where(Tier.slug == "starter"))
        for i in range(students):
            user = User(
                email=f"student{i}@load.test",
                name=f"Student {i}",
                password_hash=password_hash,
                role="student",
            )
            provision = Provision(
                user=user,
                tier=tier,
                status="active",
                sender_first_name="Tim",
                sender_last_name="Keen",
                username_patterns=list(PATTERNS),
                paid_at=now - timedelta(days=days, hours=2),
                activated_at=now - timedelta(days=days),
            )
            session.add(provision)
            for position, key in enumerate(PROVISION_STEPS):
                session.add(
                    ProvisioningStep(
                        provision=provision,
                        step_key=key,
                        position=position,
                        status="completed",
                        attempt=1,
                        started_at=now - timedelta(days=days, hours=2),
                        finished_at=now - timedelta(days=days, hours=1),
                    )
                )
            for d in range(3):
                domain = Domain(
                    provision=provision,
                    name=f"loadstudent{i}n{d}.com",
                    price_cents=1200,
                    zapmail_domain_id=f"zd-{i}-{d}",
                    status="ACTIVE",
                    purchase_state="purchased",
                    purchased_at=now - timedelta(days=days),
                    dmarc_email="dmarc-reports@outbound.example",
                )
                session.add(domain)
                for m, pattern in enumerate(PATTERNS):
                    username = render_username(pattern, "Tim", "Keen")
                    box = Mailbox(
                        domain=domain,
                        address=f"{username}@{domain.name}",
                        username=username,
                        first_name="Tim",
                        last_name="Keen",
                        zapmail_mailbox_id=f"zm-{i}-{d}-{m}",
                        plusvibe_account_id=f"{i:08x}{d:08x}{m:08x}",
                        status="ACTIVE",
                        warmup_enabled=True,
                    )
                    session.add(box)
                    for day in range(days):
                        session.add(
                            WarmupSnapshot(
                                mailbox=box,
                                day=today - timedelta(days=days - 1 - day),
                                health=round(min(100.0, 60 + day + rng.uniform(-5, 5)), 1),
                                reply_rate=round(rng.uniform(20, 45), 1),
                                sent=0,
                                warmup_sent=min(2 + day, 40),
                            )
                        )
            emails.append(user.email)
            if i % 20 == 19:
                session.flush()
    return emails


def sign_in(portal: str, emails: list[str]) -> list[str]:
    """Sign every student in through the portal; return their session cookies."""
    cookies = []
    for email in emails:
        with httpx.Client(base_url=portal, headers={"User-Agent": USER_AGENT}) as http:
            token = csrf_token(http.get("/auth/login").text)
            answer = http.post(
                "/auth/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
            )
            if answer.status_code != 302:
                raise RuntimeError(f"sign-in of {email} answered {answer.status_code}")
            cookies.append(http.cookies["portal_session"])
    return cookies


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The phases: warm-up, ceilings (closed loop), then fixed rates (open loop)."""
    d = args.duration_s
    # What the progress page does: send back the last ETag (see the module docstring).
    conditional = not args.unconditional
    phases = [
        {"name": "warmup", "path": "/progress.json", "mode": "closed", "concurrency": 4,
         "duration_s": min(3.0, d), "auth": True, "conditional": conditional},
    ]  # fmt: skip
    for name, path, auth in (
        ("trivial", "/healthz", False),
        ("progress", "/progress.json", True),
        ("dashboard", "/dashboard", True),
    ):
        phases.append(
            {"name": f"{name}-ceiling", "path": path, "mode": "closed",
             "concurrency": args.concurrency, "duration_s": d, "auth": auth,
             "conditional": conditional and name == "progress"}
        )  # fmt: skip
    for rate in args.progress_rates:
        phases.append(
            {"name": "progress", "path": "/progress.json", "mode": "open", "rate": rate,
             "duration_s": d, "auth": True, "conditional": conditional}
        )  # fmt: skip
    for rate in args.dashboard_rates:
        phases.append(
            {"name": "dashboard", "path": "/dashboard", "mode": "open", "rate": rate,
             "duration_s": d, "auth": True}
        )  # fmt: skip
    return phases


def drive(portal: str, cookies: list[str], phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the load generator in its own process; return its per-phase results."""
    spec = {"base": portal, "user_agent": USER_AGENT, "cookies": cookies, "phases": phases}
    done = subprocess.run(
        [sys.executable, str(LOADGEN)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for result in results:
        sys.stdout.write(
            f"{result['name']:>18} {result['mode']:>6} rate={result.get('rate', '-')!s:>5} "
            f"rps={result['rps']:>7} p50={result['p50_ms']:>7}ms p99={result['p99_ms']:>7}ms "
            f"errors={result['errors']} 304s={result.get('not_modified', 0)}\n"
        )
    return results


def at_rate(results: list[dict[str, Any]], name: str, rate: float) -> dict[str, Any] | None:
    """The open-loop phase of ``name`` closest to ``rate`` (exact when the sweep includes it)."""
    phases = [r for r in results if r["name"] == name and r["mode"] == "open"]
    return min(phases, key=lambda r: abs(r["rate"] - rate)) if phases else None


def main() -> None:
    """Seed, sign in, drive the portal and write the results."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--days", type=int, default=30, help="warmup snapshots per mailbox")
    parser.add_argument("--duration-s", type=float, default=10, help="per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--progress-rates", type=float, nargs="*", default=[50, 100, 200, 300, 400])
    parser.add_argument("--dashboard-rates", type=float, nargs="*", default=[10, 25, 50, 75])
    parser.add_argument("--portal-workers", type=int, default=4)
    parser.add_argument("--portal-threads", type=int, default=4)
    parser.add_argument(
        "--unconditional", action="store_true", help="poll progress.json without If-None-Match"
    )
    args = parser.parse_args()

    options = StackOptions(
        prefect=False, portal_workers=args.portal_workers, portal_threads=args.portal_threads
    )
    with running_stack("bench_portal", options) as stack:
        started = time.monotonic()
        emails = seed(stack.factory, args.students, args.days)
        seeded = time.monotonic() - started
        cookies = sign_in(stack.portal_url, emails)
        portal_pid = stack.processes["portal"].pid
        cpu_before = cpu_seconds(portal_pid)
        with MemorySampler({"portal": portal_pid}) as memory:
            results = drive(stack.portal_url, cookies, plan(args))
        portal_cpu = cpu_seconds(portal_pid) - cpu_before

    ceiling = {r["name"].removesuffix("-ceiling"): r for r in results if r["mode"] == "closed"}
    progress = at_rate(results, "progress", 300)
    dashboard = at_rate(results, "dashboard", 50)
    result = {
        "progress_p99_ms": progress["p99_ms"] if progress else None,
        "progress_rps": ceiling["progress"]["rps"],
        "dashboard_p99_ms": dashboard["p99_ms"] if dashboard else None,
        "trivial_rps": ceiling["trivial"]["rps"],
    }
    summary = {
        "settings": vars(args),
        "seed_s": round(seeded, 1),
        "progress_share_of_trivial": round(result["progress_rps"] / result["trivial_rps"], 2),
        "dashboard_rps": ceiling["dashboard"]["rps"],
        "portal_cpu_s": round(portal_cpu, 1),
        "memory": memory.report(),
        "phases": results,
    }
    write_result("portal_load", summary, result)


if __name__ == "__main__":
    main()
