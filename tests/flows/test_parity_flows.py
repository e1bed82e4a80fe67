"""Parity flows on the sandbox: forwarding, DNS health with drift, capacity snapshots and alerts."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from core.db import utcnow
from core.models import CapacitySnapshot
from core.models import Domain
from core.models import DomainHealth
from core.models import Notification
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from flows.capacity import capacity_snapshot
from flows.dns_health import dns_health
from flows.forwarding import forwarding
from flows.provision import provision
from tasks import dns_health as dns_tasks
from tests.factories import make_user
from tests.flows.conftest import Pipeline

pytestmark = pytest.mark.prefect

SITE = "https://tim.example/"


@pytest.fixture(autouse=True)
def _no_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The health check's one-read-a-second pace is for production; tests read at once."""
    monkeypatch.setattr(dns_tasks, "MIN_INTERVAL_S", 0.0)


def active_provision(pipeline: Pipeline, email: str, website: str | None = None) -> int:
    """A provision run to active, forwarding to ``website`` when given."""
    provision_id = pipeline.paid_provision(email=email)
    if website:
        pipeline.session.get(Provision, provision_id).forward_to = website  # type: ignore[union-attr]
        pipeline.session.commit()
    assert provision(provision_id)["status"] == "active"
    pipeline.session.expire_all()
    return provision_id


def names_of(pipeline: Pipeline, provision_id: int) -> list[str]:
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    return sorted(d.name for d in row.domains)


def forwarding_ledger(pipeline: Pipeline, kind: str = "domain_forwarding_set") -> Counter[str]:
    return Counter(e["item"] for e in pipeline.sandbox.ledger(vendor="zapmail", kind=kind))


def health_mail(pipeline: Pipeline) -> list[Notification]:
    pipeline.session.expire_all()
    return list(
        pipeline.session.scalars(
            select(Notification)
            .where(Notification.key.like("domain-health:%"))
            .order_by(Notification.key)
        )
    )


def zapmail_routes(pipeline: Pipeline) -> dict[str, dict[str, int]]:
    return pipeline.sandbox.stats()["vendors"].get("zapmail", {}).get("routes", {})


def test_provisioning_forwards_every_domain_to_the_website(pipeline: Pipeline) -> None:
    provision_id = active_provision(pipeline, "fwd@student.test", SITE)
    names = names_of(pipeline, provision_id)

    assert forwarding_ledger(pipeline) == Counter(names)  # one set per domain, one call in all
    assert zapmail_routes(pipeline)["POST /v2/domains/forwarding"] == {"200": 1}
    for name in names:
        visit = pipeline.sandbox.control("GET", "/zapmail/visit", params={"domain": name}).json()
        assert visit == {"domain": name, "status": 301, "location": SITE}
    domains = pipeline.session.scalars(select(Domain).where(Domain.provision_id == provision_id))
    assert {d.forwarded_to for d in domains} == {SITE}
    step = pipeline.session.scalars(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == "forwarding"
        )
    ).one()
    assert step.status == "completed" and step.details["set"] == names


def test_without_a_website_the_step_completes_without_a_call(pipeline: Pipeline) -> None:
    provision_id = active_provision(pipeline, "nofwd@student.test")
    step = pipeline.session.scalars(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == "forwarding"
        )
    ).one()
    assert step.status == "completed" and step.details["skipped"] == "no website given"
    assert "POST /v2/domains/forwarding" not in zapmail_routes(pipeline)
    assert not forwarding_ledger(pipeline)


def test_forwarding_flow_changes_then_removes_and_a_rerun_changes_nothing(
    pipeline: Pipeline,
) -> None:
    provision_id = active_provision(pipeline, "change@student.test", SITE)
    names = names_of(pipeline, provision_id)
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    row.forward_to = "https://tim-new.example/"
    pipeline.session.commit()

    assert forwarding(provision_id, "forwarding:change:1")["set"] == names
    assert forwarding(provision_id, "forwarding:change:2")["set"] == []  # looked first: no call
    sets = pipeline.sandbox.ledger(vendor="zapmail", kind="domain_forwarding_set")
    assert Counter(e["forward_to"] for e in sets) == {SITE: 3, "https://tim-new.example/": 3}

    row.forward_to = None
    pipeline.session.commit()
    assert forwarding(provision_id, "forwarding:change:3")["removed"] == names
    assert forwarding(provision_id, "forwarding:change:4")["removed"] == []
    assert forwarding_ledger(pipeline, "domain_forwarding_removed") == Counter(names)
    pipeline.session.expire_all()
    domains = pipeline.session.scalars(select(Domain).where(Domain.provision_id == provision_id))
    assert {d.forwarded_to for d in domains} == {None}


def test_forwarding_flow_of_a_cancelled_order_changes_nothing(pipeline: Pipeline) -> None:
    provision_id = active_provision(pipeline, "gone@student.test", SITE)
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    row.forward_to, row.status = None, "cancelled"
    pipeline.session.commit()
    assert forwarding(provision_id, "forwarding:gone:1")["status"] == "stale"
    assert not forwarding_ledger(pipeline, "domain_forwarding_removed")


def test_dns_health_stores_two_reads_per_domain_and_alerts_on_drift_once(
    pipeline: Pipeline,
) -> None:
    make_user(pipeline.session, "ops@bootcamp.test", role=Role.ADMIN)
    pipeline.session.commit()
    provision_id = active_provision(pipeline, "dns@student.test")
    names = names_of(pipeline, provision_id)
    pipeline.sandbox.control("POST", "/stats/reset")

    summary = dns_health()

    assert summary["domains"] == 3 and summary["with_problems"] == 0 and summary["alerts"] == 0
    routes = zapmail_routes(pipeline)
    assert routes == {"GET /v2/dns/": {"200": 3}, "GET /v2/domains/health-score": {"200": 3}}
    rows = pipeline.session.scalars(select(DomainHealth)).all()
    assert len(rows) == 3 and all(r.problems == [] and r.score >= 88 for r in rows)
    assert {r["check"] for r in rows[0].records if r["check"]} == {"MX", "SPF", "DKIM", "DMARC"}
    assert health_mail(pipeline) == []

    # The student (or anyone) deletes DMARC on one domain; another domain's score turns critical.
    pipeline.sandbox.control(
        "POST",
        "/zapmail/dns",
        json={"domain": names[0], "recordType": "TXT", "host": "_dmarc", "value": None},
    )
    pipeline.sandbox.control(
        "POST", "/zapmail/health-score", json={"domain": names[1], "score": 20}
    )
    again = dns_health(provision_id)
    assert again["alerts"] == 2

    pipeline.session.expire_all()
    assert len(pipeline.session.scalars(select(DomainHealth)).all()) == 3  # one row per day
    sent = health_mail(pipeline)
    assert sorted(n.recipient for n in sent) == sorted(
        ["dns@student.test", "ops@bootcamp.test"] * 2
    )
    student = [n for n in sent if n.recipient == "dns@student.test"]
    assert any("No DMARC record" in n.body and names[0] in n.subject for n in student)
    assert any("critical" in n.body and names[1] in n.subject for n in student)

    dns_health(provision_id)  # the same problems again: shown on the dashboard, not re-sent
    assert len(health_mail(pipeline)) == 4


def test_capacity_snapshot_stores_wallet_and_slots_and_warns_admins_once(
    pipeline: Pipeline,
) -> None:
    make_user(pipeline.session, "ops@bootcamp.test", role=Role.ADMIN)
    pipeline.session.commit()
    pipeline.sandbox.control("POST", "/zapmail/wallet", json={"balance": 20})
    pipeline.sandbox.configure(zapmail_mailbox_slots=4)
    # Paid, its run not started yet: 3 domains to buy (at the .com estimate) and 6 mailboxes.
    waiting = pipeline.session.get(Provision, pipeline.paid_provision(email="waiting@student.test"))
    assert waiting is not None
    waiting.paid_at = utcnow()
    pipeline.session.commit()

    assert capacity_snapshot() == {"wallet_cents": 2000, "slots_purchased": 4, "slots_free": 4}
    capacity_snapshot()

    snapshots = pipeline.session.scalars(select(CapacitySnapshot)).all()
    assert [(s.wallet_cents, s.slots_free, s.error) for s in snapshots] == [(2000, 4, None)] * 2
    (warning,) = pipeline.session.scalars(select(Notification)).all()  # once, not per run
    assert warning.recipient == "ops@bootcamp.test"
    assert "does not cover the paid orders waiting to be set up" in warning.body
    assert "4 free mailbox slots do not cover the paid orders" in warning.body


def test_a_capacity_reading_that_fails_is_stored_as_failed(pipeline: Pipeline) -> None:
    pipeline.sandbox.add_fault(
        vendor="zapmail", path="/v2/wallet/balance", kind="status", status=403, times=1
    )
    assert capacity_snapshot(return_state=True).is_failed()
    (row,) = pipeline.session.scalars(select(CapacitySnapshot)).all()
    assert row.wallet_cents is None and row.error and "403" in row.error


def test_a_run_stopped_for_mailbox_slots_emails_the_admins_with_the_numbers(
    pipeline: Pipeline,
) -> None:
    make_user(pipeline.session, "ops@bootcamp.test", role=Role.ADMIN)
    pipeline.session.commit()
    pipeline.sandbox.configure(zapmail_mailbox_slots=4)
    provision_id = pipeline.paid_provision(email="slots@student.test")

    assert provision(provision_id, return_state=True).is_failed()

    pipeline.session.expire_all()
    alerts = pipeline.session.scalars(
        select(Notification).where(Notification.key.like(f"capacity-stop:{provision_id}:%"))
    ).all()
    assert [a.recipient for a in alerts] == ["ops@bootcamp.test"]
    body = alerts[0].body
    assert "Zapmail: 4 free mailbox slots of 4 purchased; this run needs 6." in body
    assert "Buy at least 2 add-on mailbox slots" in body
    assert alerts[0].sent_at is not None  # sent at once, not at the next sweep
