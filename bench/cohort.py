"""Cohort launch: N students pay within one minute; time until every provision is active.

Full stack (bench/stack.py): portal under gunicorn, PostgreSQL, `prefect server` and a process
worker, the sandbox at 150 ms +- 50 ms per call with its clock at ``--speed`` (default 60: a
domain's 15 simulated minutes take 15 s, a mailbox's hour takes 60 s) and Stripe's signed webhooks
and Zapmail's signed webhooks delivered to the portal. Students have chosen their domains before
(the availability answers are cached, as the wizard leaves them); each signs in, opens Checkout
from the review page, pays on the sandbox's hosted page and then polls progress.json every 3 s.

Lower bound: no orchestration beats max(the vendor critical path of one provision, the last
payment plus that path, the Zapmail calls a minimal pipeline needs (10 per provision) at 200 per
minute). The critical path is the activation delays plus one latency per sequential call.

Usage: python bench/cohort.py --students 20. Last line: RESULT students=... makespan_s=... .
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from datetime import UTC
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func
from sqlalchemy import select
from stack import MemorySampler
from stack import StackOptions
from stack import cpu_seconds
from stack import csrf_token
from stack import percentile
from stack import running_stack
from stack import stop_on_sigterm
from stack import write_result

from clients.zapmail import ZapmailClient
from core.db import session_scope
from core.mailboxes import DEFAULT_PATTERNS
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import Tier
from core.models import User
from core.passwords import hash_password
from core.settings import Settings
from portal import drafts
from portal.availability import AvailabilityConfig
from portal.availability import AvailabilityService
from sandbox.vendors.zapmail import catalog

PASSWORD = "cohort-bench-password"
# Calls of a minimal pipeline, one latency each on the critical path: Zapmail (workspace, buy,
# domain check, DMARC, mailboxes, mailbox check, third-party account, export, ...) per issue 7,
# PlusVibe (workspace, client, account check, warmup), HeyReach (list).
MINIMAL_CALLS = {"zapmail": 10, "plusvibe": 4, "heyreach": 1}
ZAPMAIL_PER_MINUTE = 200


def seed(stack: Any, students: int) -> list[str]:
    """Students with a finished draft (Starter, three checked domains); return their emails."""
    settings = Settings(env="dev", database_url=stack.app_url, sandbox_url=stack.sandbox.url)
    # The sandbox marks some names as registered elsewhere (a hash rule): skip those up front so
    # the availability calls below ask about exactly the three names each student keeps.
    names = []
    for i in range(students):
        pool = (f"cohortstudent{i}n{j}.com" for j in range(100))
        names.append([n for n in pool if not catalog.registered_elsewhere(n)][:3])
    password_hash = hash_password(PASSWORD)  # one scrypt hash for all: seeding stays fast
    emails = []
    with session_scope(stack.factory) as session:
        # The wizard's availability answers, cached as the domain step leaves them.
        service = AvailabilityService(
            session, AvailabilityConfig(budget=100), lambda: ZapmailClient.from_settings(settings)
        )
        flat = [n for group in names for n in group]
        for start in range(0, len(flat), 20):
            service.check(flat[start : start + 20])
            time.sleep(0.3)  # Zapmail allows 5 requests/s: a burst of checks would get a 429
        answers = service.lookup(flat)
        unusable = [n for n in flat if not answers[n].selectable]
        if unusable:
            raise RuntimeError(f"chosen domains not selectable: {unusable[:5]}")
        tier = session.scalar(select(Tier).where(Tier.slug == "starter"))
        for i, chosen in enumerate(names):
            user = User(
                email=f"student{i}@cohort.test",
                name=f"Student {i}",
                password_hash=password_hash,
                role="student",
            )
            session.add(user)
            session.flush()
            drafts.save(
                session,
                user.id,
                drafts.ORDER,
                {
                    **drafts.DEFAULTS[drafts.ORDER],
                    "tier_id": tier.id,
                    "brand": f"cohortstudent{i}",
                    "candidates": chosen,
                    "domains": chosen,
                    "first_name": "Tim",
                    "last_name": "Keen",
                    "patterns": list(DEFAULT_PATTERNS[: tier.mailboxes_per_domain]),
                },
            )
            emails.append(user.email)
    return emails


class Student(threading.Thread):
    """One student: sign in, pay through Checkout, then watch progress.json every 3 s."""

    def __init__(self, portal: str, email: str, delay_s: float, done: threading.Event) -> None:
        super().__init__(name=email, daemon=True)
        self.portal, self.email, self.delay_s, self.done = portal, email, delay_s, done
        self.paid_at: float | None = None
        self.error: str | None = None
        self.polls = 0
        self.poll_errors = 0

    def run(self) -> None:
        time.sleep(self.delay_s)
        with httpx.Client(base_url=self.portal, timeout=60) as http:
            try:
                self._checkout(http)
            except Exception as exc:  # noqa: BLE001 - reported as a failed checkout
                self.error = f"{type(exc).__name__}: {exc}"
                return
            while not self.done.wait(3.0):
                self.polls += 1
                try:
                    if http.get("/progress.json").status_code != 200:
                        self.poll_errors += 1
                except httpx.HTTPError:
                    self.poll_errors += 1

    def _checkout(self, http: httpx.Client) -> None:
        page = http.get("/auth/login")
        if page.status_code != 200:
            raise RuntimeError(f"sign-in page answered {page.status_code}")
        signed_in = http.post(
            "/auth/login",
            data={"email": self.email, "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        )
        if signed_in.status_code != 302:
            raise RuntimeError(f"sign-in answered {signed_in.status_code}")
        review = http.get("/wizard/review")
        if review.status_code != 200:
            raise RuntimeError(f"review page answered {review.status_code} {review.headers}")
        opened = http.post("/wizard/review", data={"csrf_token": csrf_token(review.text)})
        if opened.status_code != 303:
            raise RuntimeError(f"review answered {opened.status_code}")
        checkout = opened.headers["location"]
        http.get(checkout).raise_for_status()
        paid = http.post(
            f"{checkout}/pay", data={"action": "card", "email": self.email, "name": "Tim Keen"}
        )
        if paid.status_code != 303:
            raise RuntimeError(f"hosted checkout answered {paid.status_code}")
        self.paid_at = time.monotonic()
        http.get(paid.headers["location"])  # the success page (the webhook confirms too)


def counts(factory: Any) -> Counter[str]:
    """Provisions by status."""
    with session_scope(factory) as session:
        rows = session.execute(select(Provision.status, func.count()).group_by(Provision.status))
        return Counter({status: n for status, n in rows})


def step_timeline(factory: Any) -> dict[str, dict[str, float]]:
    """Per step, the median seconds from payment to its start and to its end (where time goes)."""
    starts: dict[str, list[float]] = {}
    ends: dict[str, list[float]] = {}
    with session_scope(factory) as session:
        rows = session.execute(
            select(
                ProvisioningStep.step_key,
                ProvisioningStep.started_at,
                ProvisioningStep.finished_at,
                Provision.paid_at,
            ).join(Provision, Provision.id == ProvisioningStep.provision_id)
        ).all()
    for key, started, finished, paid in rows:
        if paid is None:
            continue
        if started is not None:
            starts.setdefault(key, []).append((started - paid).total_seconds())
        if finished is not None:
            ends.setdefault(key, []).append((finished - paid).total_seconds())
    order = sorted(ends, key=lambda k: statistics.median(ends[k]))
    return {
        key: {
            "start_p50": round(statistics.median(starts.get(key, [0.0])), 1),
            "end_p50": round(statistics.median(ends[key]), 1),
            "end_max": round(max(ends[key]), 1),
        }
        for key in order
    }


def bound(args: argparse.Namespace, students: int, arrival_span_s: float) -> dict[str, float]:
    """The vendors' lower bound on the makespan, from the sandbox's settings."""
    delays = (args.domain_s + args.mailbox_s + args.export_s) / args.speed
    critical = delays + sum(MINIMAL_CALLS.values()) * args.latency_ms / 1000
    zapmail = MINIMAL_CALLS["zapmail"] * students / (ZAPMAIL_PER_MINUTE / 60)
    return {
        "critical_path_s": round(critical, 1),
        "zapmail_throughput_s": round(zapmail, 1),
        "last_payment_plus_critical_s": round(arrival_span_s + critical, 1),
        "bound_s": round(max(critical, zapmail, arrival_span_s + critical), 1),
    }


def ledger_doubles(sandbox: Any) -> dict[str, int]:
    """Charges made more than once: domains bought twice, checkouts paid twice."""
    domains = Counter(e["item"] for e in sandbox.ledger(kind="domain_purchase"))
    payments = Counter(e.get("customer") for e in sandbox.ledger(vendor="stripe", kind="payment"))
    return {
        "domains": sum(n - 1 for n in domains.values() if n > 1),
        "payments": sum(n - 1 for n in payments.values() if n > 1),
        "domain_purchases": sum(domains.values()),
        "stripe_payments": sum(payments.values()),
    }


def run(args: argparse.Namespace) -> None:
    """Launch the cohort and write the results."""
    worker_env = {}
    if args.wait_inline_s is not None:
        worker_env["APP_WAIT_INLINE_S"] = str(args.wait_inline_s)
    if args.wait_poll_s is not None:
        worker_env["APP_WAIT_POLL_S"] = str(args.wait_poll_s)
    options = StackOptions(
        sandbox_args=[
            "--speed",
            str(args.speed),
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
            # The operator buys mailbox slots ahead of a launch (a Starter order uses 6).
            "--mailbox-slots",
            str(max(1000, 8 * args.students)),
        ],  # fmt: skip
        worker_limit=args.worker_limit,
        portal_workers=args.portal_workers,
        worker_env=worker_env,
        stripe_webhook=True,
        zapmail_webhook=not args.no_zapmail_webhook,
        engine_command=args.engine_command,
    )
    with running_stack("bench_cohort", options) as stack:
        emails = seed(stack, args.students)
        stack.sandbox.control("POST", "/stats/reset")
        done = threading.Event()
        spread = args.arrival_s / max(args.students - 1, 1)
        students = [
            Student(stack.portal_url, email, i * spread, done) for i, email in enumerate(emails)
        ]
        with MemorySampler(stack.roots()) as memory:
            launched = time.monotonic()
            launched_wall = datetime.now(UTC)
            for student in students:
                student.start()
            deadline = launched + args.timeout_s
            status: Counter[str] = Counter()
            while time.monotonic() < deadline:
                status = counts(stack.factory)
                finished = status["active"] + status["failed"]
                checkouts_over = all(not s.is_alive() or s.paid_at or s.error for s in students)
                errors = sum(1 for s in students if s.error)
                if checkouts_over and finished + errors >= args.students:
                    break
                time.sleep(1.0)
            wall = time.monotonic() - launched
            done.set()
            cpu = {role: round(cpu_seconds(pid), 1) for role, pid in stack.roots().items()}
        for student in students:
            student.join(timeout=10)

        with session_scope(stack.factory) as session:
            rows = session.execute(
                select(Provision.status, Provision.paid_at, Provision.activated_at)
            ).all()
        stats = stack.sandbox.stats()
        timeline = step_timeline(stack.factory)
        doubles = ledger_doubles(stack.sandbox)

    paid = [r.paid_at for r in rows if r.paid_at]
    active = [r for r in rows if r.status == ProvisionStatus.ACTIVE.value and r.activated_at]
    latencies = [(r.activated_at - r.paid_at).total_seconds() for r in active if r.paid_at]
    first_paid = min(paid) if paid else launched_wall
    last_done = max((r.activated_at for r in active), default=first_paid)
    makespan = (last_done - first_paid).total_seconds()
    arrival_span = (max(paid) - first_paid).total_seconds() if paid else 0.0
    limits = bound(args, args.students, arrival_span)
    # Failed: the product gave up (status failed) or the checkout broke; unfinished: still
    # provisioning when --timeout-s ran out (then makespan_s is only a lower bound).
    failed = sum(1 for r in rows if r.status == ProvisionStatus.FAILED.value) + sum(
        1 for s in students if s.error
    )
    unfinished = args.students - len(active) - failed
    if unfinished:
        makespan = max(makespan, wall)
    per_vendor = {
        vendor: round(data["total"] / max(len(paid), 1), 1)
        for vendor, data in stats["vendors"].items()
    }
    rate_limited = {vendor: data["rate_limited"] for vendor, data in stats["vendors"].items()}
    mem = memory.report()
    result = {
        "students": args.students,
        "makespan_s": round(makespan, 1),
        "bound_s": limits["bound_s"],
        "ratio": round(makespan / limits["bound_s"], 2),
        "peak_rss_mb": mem["peak_rss_mb"],
        "failed": failed,
        "double_charges": doubles["domains"] + doubles["payments"],
        "unfinished": unfinished,
    }
    summary = {
        "settings": vars(args),
        "bound": limits,
        "payment_to_active_s": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "max": round(max(latencies, default=0), 1),
        },
        "step_timeline_s": timeline,
        "wall_s": round(wall, 1),
        "statuses": dict(status),
        "checkout_errors": [s.error for s in students if s.error][:10],
        "vendor_calls_per_provision": per_vendor,
        "vendor_routes": {v: d["routes"] for v, d in stats["vendors"].items()},
        "rate_limited_429_absorbed": rate_limited,
        "ledger": doubles,
        "memory": mem,
        "cpu_s_by_role": cpu,
        "progress_polls": sum(s.polls for s in students),
        "progress_poll_errors": sum(s.poll_errors for s in students),
    }
    variant = "_no_launcher" if args.engine_command else ""
    write_result(f"cohort_{args.students}{variant}", summary, result)


def main() -> None:
    """Parse the arguments and run the benchmark."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--arrival-s", type=float, default=60, help="checkouts spread over")
    parser.add_argument("--speed", type=float, default=60, help="sandbox clock speed")
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--jitter-ms", type=float, default=50)
    parser.add_argument("--domain-s", type=float, default=900, help="simulated seconds")
    parser.add_argument("--mailbox-s", type=float, default=3600, help="simulated seconds")
    parser.add_argument("--export-s", type=float, default=120, help="simulated seconds")
    parser.add_argument("--worker-limit", type=int, default=10)
    parser.add_argument("--portal-workers", type=int, default=4)
    parser.add_argument("--wait-inline-s", type=float, help="APP_WAIT_INLINE_S for the flows")
    parser.add_argument("--wait-poll-s", type=float, help="APP_WAIT_POLL_S for the flows")
    parser.add_argument("--no-zapmail-webhook", action="store_true")
    parser.add_argument(
        "--no-launcher",
        dest="engine_command",
        action="store_true",
        help="comparison: a fresh `python -m prefect.engine` per run instead of the warm launcher",
    )
    parser.add_argument("--timeout-s", type=float, help="give up after (default 300 + 4x bound)")
    args = parser.parse_args()
    if args.timeout_s is None:
        args.timeout_s = 300 + 4 * bound(args, args.students, args.arrival_s)["bound_s"]
    run(args)


if __name__ == "__main__":
    main()
