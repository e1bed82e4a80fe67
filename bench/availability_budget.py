"""Availability budget: Zapmail checks the wizard spends per student, and what happens at the end.

Zapmail allows 100 availability checks (20 names each) per 30 minutes for the whole operator
account. Each student signs in, picks Starter, runs one brand search (20 suggestions) and one
manual search of a name outside the suggestions. Checks are counted at the vendor (the sandbox's
`available-bulk` counter) and in the portal's `availability_calls`.

Two arrival patterns. Sequential: students one after another through the in-process Flask client
(no overlap, so nothing can be shared but the cache). Launch day: the real portal under gunicorn
(4 workers x 4 threads) over HTTP, the students arriving within the launch minute, each doing the
brand search, a think time, then the manual search, many at once, so that the portal can pack
different students' names into shared 20-name calls.

Scenarios: ``distinct`` (every student a different brand: no cache hits), ``similar`` (a cohort
whose brands repeat, four students per brand, manual names from three variants per brand), and
``budget`` (distinct brands with the real limits: when does the portal pause, and what does the
student see), each sequential; then ``launch_distinct``, ``launch_similar`` and ``launch_budget``.
All but the budget ones lift the limits so that every student is counted.

Usage: python bench/availability_budget.py [--students 60]. Last line: RESULT checks_per_student=...
(the launch-day distinct-brand figure), then the other figures as key=value pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import threading
import time
from html import unescape
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from stack import StackOptions
from stack import base_env
from stack import csrf_token
from stack import percentile
from stack import running_stack
from stack import stop_on_sigterm
from stack import stop_tree
from stack import write_result

from core.db import session_scope
from core.domains import suggest_domains
from core.models import AvailabilityCall
from core.models import DomainCheck
from core.models import PendingCheck
from core.models import Tier
from core.models import User
from core.passwords import hash_password
from core.settings import Settings
from deployments.local import BIN
from deployments.local import free_port
from deployments.local import spawn
from deployments.local import wait_healthy

PASSWORD = "availability-bench-password"
PACE_S = 0.35
ROUTE = "POST /v2/domains/available-bulk"
SYLLABLES = ["ka", "lo", "mi", "ven", "tor", "sa", "ri", "bel", "dun", "ex", "qua", "zo", "nar"]
FLASH = re.compile(r'<div class="flash flash-(?:warning|error)"[^>]*>(.*?)</div>', re.S)
PAUSED = "Names checked recently are still shown"
# Launch day: arrivals spread over the launch minute; think time between the two searches.
ARRIVAL_S = 60.0
THINK_S = (5.0, 20.0)


def brand(rng: random.Random) -> str:
    """A made-up two-word brand (e.g. "Kalo Venri")."""
    words = ["".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() for _ in range(2)]
    return " ".join(words)


def manual_name(label: str, variant: int) -> str:
    """A name a student types by hand, outside the brand's suggestions."""
    name = f"{label}{['team', 'hq', 'works'][variant % 3]}mail.com"
    assert name not in suggest_domains(label)
    return name


def students_for(scenario: str, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(brand, manual name) per student."""
    if scenario == "similar":
        pool = [brand(rng) for _ in range(max(1, count // 4))]
        picks = [rng.choice(pool) for _ in range(count)]
    else:
        picks = [brand(rng) for _ in range(count)]
    return [(b, manual_name(b.lower().replace(" ", ""), rng.randrange(3))) for b in picks]


def bulk_calls(sandbox: Any) -> int:
    """Availability calls Zapmail (the sandbox) has answered or refused."""
    routes = sandbox.stats()["vendors"].get("zapmail", {}).get("routes", {})
    return sum(routes.get(ROUTE, {}).values())


def reset_checks(stack: Any) -> int:
    """Forget every cached answer, queued name and ledger row; return Starter's tier id."""
    with session_scope(stack.factory) as session:
        session.execute(delete(AvailabilityCall))
        session.execute(delete(DomainCheck))
        session.execute(delete(PendingCheck))
        return int(session.scalar(select(Tier.id).where(Tier.slug == "starter")))


def ledger(stack: Any) -> dict[str, int]:
    """The portal's recorded calls and the names they carried."""
    with session_scope(stack.factory) as session:
        calls, names = session.execute(
            select(func.count(), func.coalesce(func.sum(AvailabilityCall.name_count), 0))
        ).one()
    return {"portal_recorded_calls": int(calls), "names_sent": int(names)}


def fresh_start(stack: Any, *, limits: bool) -> int:
    """Reset the sandbox (lifting Zapmail's limits unless ``limits``) and the checks; the tier id."""
    stack.sandbox.reset(config=True)
    if not limits:
        stack.sandbox.configure(
            zapmail_checks_per_30min=100_000, zapmail_per_second=1000, zapmail_per_minute=100_000
        )
    return reset_checks(stack)


def run_scenario(
    stack: Any,
    scenario: str,
    count: int,
    seed: int,
    *,
    limits: bool,
    budget: int | None = None,
    gather_ms: int | None = None,
) -> dict[str, Any]:
    """Walk ``count`` students through the domain step; count the checks."""
    from portal import create_app

    sandbox = stack.sandbox
    tier_id = fresh_start(stack, limits=limits)
    settings = Settings(env="dev", database_url=stack.app_url, sandbox_url=sandbox.url)
    overrides: dict[str, Any] = {"WTF_CSRF_ENABLED": False}
    if not limits:
        overrides["AVAILABILITY_BUDGET"] = 100_000
    elif budget is not None:
        overrides["AVAILABILITY_BUDGET"] = budget
    if gather_ms is not None:
        overrides["AVAILABILITY_GATHER_MS"] = gather_ms
    app = create_app(settings, **overrides)
    rng = random.Random(seed)
    password_hash = hash_password(PASSWORD)
    per_student, first_paused, message = [], None, None
    for i, (brand_name, manual) in enumerate(students_for(scenario, count, rng)):
        email = f"{scenario}{i}-{seed}@budget.test"
        with session_scope(stack.factory) as session:
            session.add(User(email=email, name="Student", password_hash=password_hash))
        client = app.test_client()
        client.post("/auth/login", data={"email": email, "password": PASSWORD})
        client.post("/wizard/package", data={"tier_id": tier_id})
        before = bulk_calls(sandbox)
        pages = []
        for action in (
            {"action": "search", "brand": brand_name},
            {"action": "check", "name": manual},
        ):
            if limits:
                # Below Zapmail's 5/s and 200/min: this scenario is about the 30-minute budget.
                time.sleep(PACE_S)
            pages.append(client.post("/wizard/domains", data=action, follow_redirects=True))
        per_student.append(bulk_calls(sandbox) - before)
        for page in pages:
            text = page.get_data(as_text=True)
            # The flash of a refused check (the page's own banner lacks this sentence).
            if first_paused is None and PAUSED in text:
                first_paused = i
                message = [" ".join(unescape(m).split()) for m in FLASH.findall(text)]
    app.extensions["portal_db"].dispose()
    vendor = bulk_calls(sandbox)
    return {
        "arrival": "sequential",
        "students": count,
        "vendor_checks": vendor,
        **ledger(stack),
        "checks_per_student": round(vendor / count, 2),
        "per_student": per_student,
        "first_paused_student": first_paused,
        "paused_message": message,
    }


class LaunchStudent(threading.Thread):
    """One student on launch day: sign in, pick Starter, brand search, think, manual search."""

    def __init__(
        self,
        portal: str,
        email: str,
        tier_id: int,
        plan: tuple[str, str],
        delays: tuple[float, float],
    ) -> None:
        super().__init__(name=email, daemon=True)
        self.portal, self.email, self.tier_id = portal, email, tier_id
        self.brand, self.manual = plan
        self.arrive_s, self.think_s = delays
        self.latencies: list[float] = []
        self.paused_at: float | None = None
        self.message: list[str] | None = None
        self.error: str | None = None

    def run(self) -> None:
        time.sleep(self.arrive_s)
        try:
            with httpx.Client(base_url=self.portal, timeout=120) as http:
                self._walk(http)
        except Exception as exc:  # noqa: BLE001 - reported in the scenario's figures
            self.error = f"{type(exc).__name__}: {exc}"

    def _walk(self, http: httpx.Client) -> None:
        page = http.get("/auth/login")
        token = csrf_token(page.text)
        http.post(
            "/auth/login", data={"email": self.email, "password": PASSWORD, "csrf_token": token}
        )
        page = http.get("/wizard/package")
        http.post(
            "/wizard/package", data={"tier_id": self.tier_id, "csrf_token": csrf_token(page.text)}
        )
        token = csrf_token(http.get("/wizard/domains").text)
        for i, action in enumerate(
            ({"action": "search", "brand": self.brand}, {"action": "check", "name": self.manual})
        ):
            if i:
                time.sleep(self.think_s)
            started = time.monotonic()
            answer = http.post(
                "/wizard/domains", data={**action, "csrf_token": token}, follow_redirects=True
            )
            self.latencies.append(time.monotonic() - started)
            answer.raise_for_status()
            if self.paused_at is None and PAUSED in answer.text:
                self.paused_at = time.monotonic()
                self.message = [" ".join(unescape(m).split()) for m in FLASH.findall(answer.text)]


def start_gunicorn(stack: Any, **overrides: int | None) -> tuple[Any, str]:
    """The portal as in production (gunicorn, 4 workers x 4 threads), with config overrides."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    given = ", ".join(f"{key}={value}" for key, value in overrides.items() if value is not None)
    factory = f"portal:create_app({given})"
    process = spawn(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "4",
            "--threads",
            "4",
            "--access-logfile",
            "-",
            factory,
        ],
        env={**os.environ, **base_env(stack), "APP_PUBLIC_URL": url},
        log=stack.work / f"portal-{port}.log",
    )
    try:
        wait_healthy(f"{url}/healthz", process)
    except BaseException:
        stop_tree(process)
        raise
    return process, url


def run_launch(
    stack: Any,
    scenario: str,
    count: int,
    seed: int,
    *,
    limits: bool,
    budget: int | None = None,
    gather_ms: int | None = None,
) -> dict[str, Any]:
    """Launch day: ``count`` students arrive within the minute and search concurrently."""
    sandbox = stack.sandbox
    tier_id = fresh_start(stack, limits=limits)
    rng = random.Random(seed)
    plans = students_for(scenario, count, rng)
    password_hash = hash_password(PASSWORD)
    emails = [f"launch-{scenario}{i}-{seed}@budget.test" for i in range(count)]
    with session_scope(stack.factory) as session:
        for email in emails:
            session.add(User(email=email, name="Student", password_hash=password_hash))
    delays = sorted(
        ((rng.uniform(0, ARRIVAL_S), rng.uniform(*THINK_S)) for _ in range(count)),
        key=lambda d: d[0],
    )
    process, url = start_gunicorn(
        stack,
        AVAILABILITY_BUDGET=budget if limits else 100_000,
        AVAILABILITY_GATHER_MS=gather_ms,
    )
    try:
        started = time.monotonic()
        students = [
            LaunchStudent(url, email, tier_id, plan, delay)
            for email, plan, delay in zip(emails, plans, delays, strict=True)
        ]
        for student in students:
            student.start()
        for student in students:
            student.join(600)
        elapsed = time.monotonic() - started
    finally:
        stop_tree(process)
    vendor = bulk_calls(sandbox)
    recorded = ledger(stack)
    latencies = [t for s in students for t in s.latencies]
    paused = [s for s in students if s.paused_at is not None]
    first = min(paused, key=lambda s: s.paused_at or 0) if paused else None
    return {
        "arrival": f"{count} students within {ARRIVAL_S:.0f} s, think {THINK_S[0]:.0f}-{THINK_S[1]:.0f} s",
        "students": count,
        "vendor_checks": vendor,
        **recorded,
        "checks_per_student": round(vendor / count, 2),
        "names_per_call": round(
            recorded["names_sent"] / max(recorded["portal_recorded_calls"], 1), 1
        ),
        "search_latency_p50_s": round(percentile(latencies, 50), 2),
        "search_latency_p95_s": round(percentile(latencies, 95), 2),
        "search_latency_max_s": round(max(latencies, default=0.0), 2),
        "elapsed_s": round(elapsed, 1),
        "students_paused": len(paused),
        "paused_message": first.message if first else None,
        "errors": [s.error for s in students if s.error],
    }


def main() -> None:
    """Run the sequential and the launch-day scenarios and write the results."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--portal-budget", type=int, help="the portal's share of the 100 checks (default: its own)"
    )
    parser.add_argument(
        "--gather-ms", type=int, help="the portal's gathering window (default: its own)"
    )
    args = parser.parse_args()
    scenarios: dict[str, dict[str, Any]] = {}

    def report(scenario: str) -> None:
        shown = {k: v for k, v in scenarios[scenario].items() if k != "per_student"}
        sys.stdout.write(f"{scenario}: {shown}\n")
        sys.stdout.flush()

    with running_stack("bench_budget", StackOptions(prefect=False, portal=False)) as stack:
        for scenario, limits in (("distinct", False), ("similar", False), ("budget", True)):
            name = "distinct" if scenario == "budget" else scenario
            scenarios[scenario] = run_scenario(
                stack,
                name,
                args.students,
                args.seed + len(scenarios),
                limits=limits,
                budget=args.portal_budget,
                gather_ms=args.gather_ms,
            )
            report(scenario)
        for scenario, limits in (("distinct", False), ("similar", False), ("budget", True)):
            name = "distinct" if scenario == "budget" else scenario
            key = f"launch_{scenario}"
            scenarios[key] = run_launch(
                stack,
                name,
                args.students,
                args.seed + len(scenarios),
                limits=limits,
                budget=args.portal_budget,
                gather_ms=args.gather_ms,
            )
            report(key)
    seq, budget, launch = scenarios["distinct"], scenarios["budget"], scenarios["launch_distinct"]
    result = {
        "checks_per_student": launch["checks_per_student"],
        "checks_per_student_sequential": seq["checks_per_student"],
        "checks_per_student_similar": scenarios["similar"]["checks_per_student"],
        "checks_per_student_launch_similar": scenarios["launch_similar"]["checks_per_student"],
        "launch_search_latency_p95_s": launch["search_latency_p95_s"],
        "students_served_before_pause": budget["first_paused_student"]
        if budget["first_paused_student"] is not None
        else args.students,
        "launch_students_paused": scenarios["launch_budget"]["students_paused"],
    }
    write_result("availability_budget", {"settings": vars(args), "scenarios": scenarios}, result)


if __name__ == "__main__":
    main()
