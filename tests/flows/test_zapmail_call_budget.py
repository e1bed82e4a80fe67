"""What a fault-free provision spends at Zapmail: at most 12 calls, status polls excluded.

Zapmail allows 200 calls a minute per account, shared by every provision in flight, so calls
per provision bound a cohort's makespan (docs/benchmarks.md). The count comes from the sandbox's
own per-route counters (what bench/cohort.py and bench/provision_latency.py read); the polls of
the two waits are told apart by the checks each wait step records, as the benches do. Every
call is classified: mutating (it changes something at Zapmail), listing (a read: a list, the
wallet, availability) or poll (a wait's status check). Run with ``-s`` to see the breakdown.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import update

from core.db import utcnow
from core.models import DomainCheck
from core.models import Provision
from core.models import ProvisioningStep
from flows.provision import provision
from tests.flows.conftest import Pipeline

pytestmark = pytest.mark.prefect

BUDGET = 12
# POSTs that only read; every other POST, PUT, PATCH or DELETE changes something.
READING_POSTS = frozenset({"POST /v2/domains/available-bulk"})
# Each wait's status check is one listing of this route (one page: a Starter order is small).
POLLED_BY = {"wait_domains": "GET /v2/domains", "wait_mailboxes": "GET /v2/mailboxes/list"}
WEBSITE = "https://student-site.example/"


def zapmail_bill(pipeline: Pipeline, provision_id: int) -> dict[str, Counter[str]]:
    """The provision's Zapmail calls by kind (mutating, listing, poll) and route."""
    routes = pipeline.sandbox.stats()["vendors"]["zapmail"]["routes"]
    calls = Counter({route: sum(codes.values()) for route, codes in routes.items()})
    pipeline.session.expire_all()
    steps = pipeline.session.scalars(
        select(ProvisioningStep).where(ProvisioningStep.provision_id == provision_id)
    )
    checks = {s.step_key: int((s.details or {}).get("checks", 0)) for s in steps}
    bill: dict[str, Counter[str]] = {"mutating": Counter(), "listing": Counter(), "poll": Counter()}
    for step, route in POLLED_BY.items():
        polls = checks.get(step, 0)
        assert calls[route] >= polls, f"{step} recorded {polls} checks, {route} saw {calls[route]}"
        bill["poll"][route] += polls
        calls[route] -= polls
    for route, count in calls.items():
        if count:
            reads = route.startswith("GET ") or route in READING_POSTS
            bill["listing" if reads else "mutating"][route] += count
    return bill


def report(title: str, bill: dict[str, Counter[str]]) -> str:
    """The breakdown as text: each kind's total, then its routes."""
    lines = [f"Zapmail calls of one fault-free provision ({title}):"]
    for kind, routes in bill.items():
        lines.append(f"  {kind}: {sum(routes.values())}")
        lines += [f"    {count} x {route}" for route, count in sorted(routes.items())]
    spent = sum(bill["mutating"].values()) + sum(bill["listing"].values())
    lines.append(f"  total without polls: {spent} (budget {BUDGET})")
    return "\n".join(lines)


def age_availability_answers(pipeline: Pipeline, provision_id: int) -> None:
    """Make the wizard's availability answers older than the purchase trusts (a re-check)."""
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    old = utcnow() - timedelta(seconds=pipeline.settings.availability_fresh_s + 60)
    pipeline.session.execute(
        update(DomainCheck)
        .where(DomainCheck.name.in_([d.name for d in row.domains]))
        .values(checked_at=old)
    )
    pipeline.session.commit()


def give_website(pipeline: Pipeline, provision_id: int) -> None:
    """A website to forward the domains to: the forwarding step then calls Zapmail."""
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    row.forward_to = WEBSITE
    pipeline.session.commit()


@pytest.mark.parametrize(
    "scenario",
    [
        # The wizard's answers still fresh, no website: the fewest calls a provision needs.
        "fresh answers, no website",
        # The answers older than APP_AVAILABILITY_FRESH_S (a re-check) and a website
        # (forwarding): the most a fault-free provision spends.
        "stale answers, website",
    ],
)
def test_a_fault_free_provision_spends_at_most_12_zapmail_calls(
    pipeline: Pipeline, scenario: str
) -> None:
    provision_id = pipeline.paid_provision(email="budget@student.test")
    if scenario == "stale answers, website":
        age_availability_answers(pipeline, provision_id)
        give_website(pipeline, provision_id)
    pipeline.sandbox.control("POST", "/stats/reset")

    assert provision(provision_id)["status"] == "active"

    bill = zapmail_bill(pipeline, provision_id)
    text = report(scenario, bill)
    print(text)  # noqa: T201 - the breakdown is the report (pytest -s shows it)
    spent = sum(bill["mutating"].values()) + sum(bill["listing"].values())
    assert spent <= BUDGET, text
    # What the scenario is about was really spent (the test measures the case it names).
    stale = scenario == "stale answers, website"
    assert bool(bill["listing"]["POST /v2/domains/available-bulk"]) is stale, text
    assert bool(bill["mutating"]["POST /v2/domains/forwarding"]) is stale, text
    # One call per domain-wide setting and per purchase, whatever the number of domains.
    for route in ("POST /v2/domains/buy", "POST /v2/domains/dmarc", "POST /v2/mailboxes"):
        assert bill["mutating"][route] == 1, text
