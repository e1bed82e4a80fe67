"""Availability budget: Zapmail checks the wizard spends per student, and what happens at the end.

Zapmail allows 100 availability checks (20 names each) per 30 minutes for the whole operator
account. Each student here signs in, picks Starter, runs one brand search (20 suggestions) and
one manual search of a name outside the suggestions, through the portal's own routes (in-process
Flask client, PostgreSQL, the sandbox's Zapmail over HTTP). Checks are counted at the vendor
(the sandbox's `available-bulk` counter) and in the portal's `availability_calls`.

Scenarios: ``distinct`` (every student a different brand: no cache hits), ``similar`` (a cohort
whose brands repeat, four students per brand, manual names from three variants per brand), and
``budget`` (distinct brands with the real limits: when does the portal pause, and what does the
student see). The first two lift the limits so that every student is counted.

Usage: python bench/availability_budget.py [--students 60]. Last line: RESULT checks_per_student=...
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from html import unescape
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from stack import StackOptions
from stack import running_stack
from stack import stop_on_sigterm
from stack import write_result

from core.db import session_scope
from core.domains import suggest_domains
from core.models import AvailabilityCall
from core.models import DomainCheck
from core.models import Tier
from core.models import User
from core.passwords import hash_password
from core.settings import Settings

PASSWORD = "availability-bench-password"
PACE_S = 0.35
ROUTE = "POST /v2/domains/available-bulk"
SYLLABLES = ["ka", "lo", "mi", "ven", "tor", "sa", "ri", "bel", "dun", "ex", "qua", "zo", "nar"]
FLASH = re.compile(r'<div class="flash flash-(?:warning|error)"[^>]*>(.*?)</div>', re.S)


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


def run_scenario(
    stack: Any, scenario: str, count: int, seed: int, *, limits: bool, budget: int | None = None
) -> dict[str, Any]:
    """Walk ``count`` students through the domain step; count the checks."""
    from portal import create_app

    sandbox = stack.sandbox
    sandbox.reset(config=True)
    if not limits:
        sandbox.configure(
            zapmail_checks_per_30min=100_000, zapmail_per_second=1000, zapmail_per_minute=100_000
        )
    with session_scope(stack.factory) as session:
        session.execute(delete(AvailabilityCall))
        session.execute(delete(DomainCheck))
        tier_id = session.scalar(select(Tier.id).where(Tier.slug == "starter"))
    settings = Settings(env="dev", database_url=stack.app_url, sandbox_url=sandbox.url)
    overrides: dict[str, Any] = {"WTF_CSRF_ENABLED": False}
    if not limits:
        overrides["AVAILABILITY_BUDGET"] = 100_000
    elif budget is not None:
        overrides["AVAILABILITY_BUDGET"] = budget
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
            if first_paused is None and "Names checked recently are still shown" in text:
                first_paused = i
                message = [" ".join(unescape(m).split()) for m in FLASH.findall(text)]
    app.extensions["portal_db"].dispose()
    with session_scope(stack.factory) as session:
        recorded = session.scalar(select(func.count()).select_from(AvailabilityCall))
    vendor = bulk_calls(sandbox)
    return {
        "students": count,
        "vendor_checks": vendor,
        "portal_recorded_calls": recorded,
        "checks_per_student": round(vendor / count, 2),
        "per_student": per_student,
        "first_paused_student": first_paused,
        "paused_message": message,
    }


def main() -> None:
    """Run the three scenarios and write the results."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--portal-budget", type=int, help="the portal's share of the 100 checks (default: its own)"
    )
    args = parser.parse_args()
    scenarios = {}
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
            )
            shown = {k: v for k, v in scenarios[scenario].items() if k != "per_student"}
            sys.stdout.write(f"{scenario}: {shown}\n")
    distinct, similar, budget = scenarios["distinct"], scenarios["similar"], scenarios["budget"]
    result = {
        "checks_per_student": distinct["checks_per_student"],
        "checks_per_student_similar": similar["checks_per_student"],
        "students_served_before_pause": budget["first_paused_student"]
        if budget["first_paused_student"] is not None
        else args.students,
    }
    write_result("availability_budget", {"settings": vars(args), "scenarios": scenarios}, result)


if __name__ == "__main__":
    main()
