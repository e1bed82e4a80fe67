"""Webhook burst: 20 threads post 110 Stripe deliveries at once; how fast does the portal answer?

The outside review measured p99 12-16 s on the demo stack because each paid checkout started its
flow run inside the webhook's transaction, holding the write lock through `run_deployment`. Now
the webhook reads the session from Stripe, commits, and leaves the start to the outbox sender.

Set-up: the full stack (`--sqlite` puts the app DB on SQLite as `make demo` does; the default is
PostgreSQL), N students who pressed Pay and paid on the sandbox's hosted page (the sandbox sends
no webhooks here: this script is Stripe). Then one burst, shuffled, from 20 threads: each paid
session's `checkout.session.completed` (built from Stripe's own copy of the session), one
redelivery of each, its `customer.subscription.created`, bad signatures, and correctly signed
events for sessions Stripe never created. Reports answer times per kind, and how long until each
paid checkout's run exists on the Prefect server. Ends with a RESULT line; JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import stripe
from sqlalchemy import func
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cohort import Student  # noqa: E402
from bench.cohort import seed  # noqa: E402
from bench.stack import StackOptions  # noqa: E402
from bench.stack import machine  # noqa: E402
from bench.stack import percentile  # noqa: E402
from bench.stack import running_stack  # noqa: E402
from bench.stack import stop_on_sigterm  # noqa: E402
from bench.stack import wait_for  # noqa: E402
from bench.stack import write_result  # noqa: E402
from core.db import session_scope  # noqa: E402
from core.models import OutboxMessage  # noqa: E402
from core.models import Provision  # noqa: E402
from core.settings import SANDBOX_KEYS  # noqa: E402
from core.settings import Settings  # noqa: E402

THREADS = 20


def _signed(body: bytes, secret: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def _event(rng: random.Random, kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_burst_{rng.getrandbits(64):016x}",
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2025-03-31.basil",
            "data": {"object": obj},
        }
    ).encode()


def pay_all(portal: str, emails: list[str]) -> None:
    """Every student presses Pay and pays on the sandbox's hosted page (no webhook is sent)."""
    done = threading.Event()
    done.set()  # Student.run stops polling at once after paying
    students = [Student(portal, email, 0.0, done) for email in emails]
    for student in students:
        student.start()
    for student in students:
        student.join()
    failed = [s.error for s in students if s.error]
    if failed:
        raise RuntimeError(f"{len(failed)} checkouts failed: {failed[:3]}")


def build_burst(
    sessions: list[dict[str, Any]], secret: str, seed_: int
) -> list[tuple[str, bytes, dict[str, str]]]:
    """The shuffled deliveries: (kind, body, headers)."""
    rng = random.Random(seed_)
    out: list[tuple[str, bytes, dict[str, str]]] = []
    for session in sessions:
        completed = _event(rng, "checkout.session.completed", session)
        out.append(("paid checkout", completed, _signed(completed, secret)))
        out.append(("redelivery", completed, _signed(completed, secret)))
        subscription = {
            "id": session["subscription"],
            "object": "subscription",
            "status": "active",
            "customer": session["customer"],
            "metadata": session.get("metadata") or {},
        }
        created = _event(rng, "customer.subscription.created", subscription)
        out.append(("subscription", created, _signed(created, secret)))
    for i in range(max(1, len(sessions) // 2)):
        forged_session = {**sessions[i % len(sessions)], "id": f"cs_test_forged_{i:04d}"}
        forged = _event(rng, "checkout.session.completed", forged_session)
        out.append(("forged session", forged, _signed(forged, secret)))
        bad = _event(rng, "checkout.session.completed", sessions[i % len(sessions)])
        out.append(("bad signature", bad, _signed(bad, "whsec_attacker")))
    rng.shuffle(out)
    return out


def warm_up(portal: str, sessions: list[dict[str, Any]], secret: str, count: int) -> None:
    """Unmeasured deliveries first, so each gunicorn worker has imported and connected once."""
    rng = random.Random(0)
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(4) as pool:
        bodies = [
            _event(rng, "checkout.session.completed", {**sessions[0], "id": f"cs_test_warm_{i}"})
            for i in range(count)
        ]
        list(
            pool.map(
                lambda body: http.post(
                    f"{portal}/webhooks/stripe", content=body, headers=_signed(body, secret)
                ),
                bodies,
            )
        )


def run(args: argparse.Namespace) -> None:
    """Start the stack, pay, burst, measure, report."""
    options = StackOptions(
        portal_workers=args.portal_workers, portal_threads=4, sqlite_app_db=args.sqlite
    )
    with running_stack("webhook_burst", options) as stack:
        emails = seed(stack, args.students)
        pay_all(stack.portal_url or "", emails)
        settings = Settings(env="dev", database_url=stack.app_url, sandbox_url=stack.sandbox.url)
        secret = settings.stripe_webhook_secret.get_secret_value()  # type: ignore[union-attr]
        client = stripe.StripeClient(
            SANDBOX_KEYS["stripe"], base_addresses={"api": f"{stack.sandbox.url}/stripe"}
        )
        with session_scope(stack.factory) as session:
            session_ids = list(
                session.scalars(
                    select(Provision.stripe_checkout_session_id).where(
                        Provision.stripe_checkout_session_id.is_not(None)
                    )
                )
            )
        sessions = [client.v1.checkout.sessions.retrieve(sid).to_dict() for sid in session_ids]
        burst = build_burst(sessions, secret, args.seed)
        warm_up(stack.portal_url or "", sessions, secret, args.portal_workers * 4)
        times: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        url = f"{stack.portal_url}/webhooks/stripe"
        started = time.monotonic()
        with httpx.Client(timeout=60) as http, ThreadPoolExecutor(THREADS) as pool:

            def post(item: tuple[str, bytes, dict[str, str]]) -> None:
                kind, body, headers = item
                t0 = time.monotonic()
                response = http.post(url, content=body, headers=headers)
                times[kind].append(time.monotonic() - t0)
                statuses[kind][response.status_code] += 1

            list(pool.map(post, burst))
        burst_s = time.monotonic() - started

        def all_sent() -> bool:
            with session_scope(stack.factory) as session:
                rows = list(
                    session.scalars(
                        select(OutboxMessage).where(OutboxMessage.key.like("checkout:%"))
                    )
                )
            return len(rows) == len(sessions) and all(r.sent_at for r in rows)

        wait_for(all_sent, timeout_s=120)
        with session_scope(stack.factory) as session:
            rows = list(
                session.scalars(select(OutboxMessage).where(OutboxMessage.key.like("checkout:%")))
            )
            start_delays = [
                (r.sent_at - r.created_at).total_seconds() for r in rows if r.sent_at is not None
            ]
            provisioning = session.scalar(
                select(func.count()).where(Provision.status == "provisioning")
            )
    every = [t for values in times.values() for t in values]
    summary = {
        "machine": machine(),
        "app_db": "sqlite" if args.sqlite else "postgresql",
        "students": args.students,
        "deliveries": len(burst),
        "threads": THREADS,
        "burst_s": round(burst_s, 2),
        "answer_ms": {
            kind: {
                "n": len(values),
                "p50": round(percentile(values, 50) * 1000, 1),
                "p95": round(percentile(values, 95) * 1000, 1),
                "p99": round(percentile(values, 99) * 1000, 1),
                "max": round(max(values) * 1000, 1),
                "statuses": dict(statuses[kind]),
            }
            for kind, values in sorted(times.items())
        },
        "all_p50_ms": round(percentile(every, 50) * 1000, 1),
        "all_p99_ms": round(percentile(every, 99) * 1000, 1),
        "paid_checkouts": len(sessions),
        "runs_started": len(start_delays),
        "provisioning": provisioning,
        "commit_to_run_s": {
            "p50": round(percentile(start_delays, 50), 2) if start_delays else None,
            "max": round(max(start_delays), 2) if start_delays else None,
        },
    }
    verdict = "met" if summary["all_p99_ms"] <= 1000 else "missed"
    sys.stderr.write(json.dumps(summary, indent=2) + "\n")
    write_result(
        f"webhook_burst_{summary['app_db']}",
        summary,
        {
            "app_db": summary["app_db"],
            "deliveries": len(burst),
            "threads": THREADS,
            "p50_ms": summary["all_p50_ms"],
            "p99_ms": summary["all_p99_ms"],
            "runs": f"{len(start_delays)}/{len(sessions)}",
            "target_p99_ms": 1000,
            "verdict": verdict,
        },
    )


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--students",
        type=int,
        default=28,
        help="paid checkouts (3 deliveries each, plus forged and bad ones)",
    )
    parser.add_argument("--sqlite", action="store_true", help="app DB on SQLite, as make demo")
    parser.add_argument("--portal-workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    stop_on_sigterm()
    run(parser.parse_args())


if __name__ == "__main__":
    main()
