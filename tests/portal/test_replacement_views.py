"""A student replaces a burned domain: the rules shown and enforced, the picker, the progress page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import DomainCheck
from core.models import DomainReplacement
from core.models import OutboxMessage
from core.models import Provision
from core.models import ProvisioningStep
from core.pipeline import REPLACEMENT_STEPS
from core.pipeline import replacement_step_key
from portal import insights
from tests.factories import MailboxFactory
from tests.factories import add_snapshots
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.helpers import signed_in
from tests.portal.replacement_support import confirm
from tests.portal.replacement_support import critical
from tests.portal.replacement_support import first_domain
from tests.portal.replacement_support import free_name
from tests.portal.replacement_support import pick
from tests.portal.replacement_support import replacement_id


def _student(app: Flask, session: Session, email: str = "ann@example.com") -> tuple[Any, Provision]:
    user = make_user(session, email)
    provision = make_provision(session, user, activated_at=utcnow())
    session.commit()
    return signed_in(app, email), provision


def _rows(session: Session) -> list[DomainReplacement]:
    session.expire_all()
    return list(session.scalars(select(DomainReplacement).order_by(DomainReplacement.id)))


def _runs(session: Session) -> list[OutboxMessage]:
    return list(
        session.scalars(select(OutboxMessage).where(OutboxMessage.key.like("replacement:%")))
    )


def test_a_healthy_domain_is_refused_with_the_reason(app: Flask, session: Session) -> None:
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Replace this domain" not in dashboard and "Burned" not in dashboard
    page = client.get(f"/dashboard/domains/{domain.id}/replace")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"{domain.name} is healthy, so it cannot be replaced yet." in text
    assert "Suggest domains" not in text  # no picker for a domain that cannot be replaced
    name = free_name("healthyswap")
    refused = client.post(
        f"/dashboard/domains/{domain.id}/replace", data={"action": "check", "name": name}
    )
    assert refused.status_code == 303
    answer = confirm(client, domain.id, name, follow_redirects=True).get_data(as_text=True)
    assert "is healthy, so it cannot be replaced yet" in answer
    assert _rows(session) == [] and _runs(session) == []
    assert session.scalar(select(Domain).where(Domain.name == name)) is None


def test_a_critical_score_allows_an_included_replacement_that_starts_at_once(
    app: Flask, session: Session
) -> None:
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    critical(session, domain)
    session.commit()
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Critical health score: cold email from this domain is likely to land in spam." in (
        dashboard
    )
    assert f'href="/dashboard/domains/{domain.id}/replace"' in dashboard
    page = client.get(f"/dashboard/domains/{domain.id}/replace").get_data(as_text=True)
    assert "1 of 1 included replacement left this month." in page
    assert "Warmup starts again on the new mailboxes" in page
    assert '<span class="mono">tim@</span>, <span class="mono">tim.keen@</span>' in page

    name = free_name("freshswap")
    moved = pick(client, domain.id, name)
    assert moved.headers["Location"] == f"/dashboard/domains/{domain.id}/replace/confirm"
    review = client.get(moved.headers["Location"]).get_data(as_text=True)
    assert f"Replace {domain.name} with {name}" in review and "Included" in review
    response = confirm(client, domain.id, name)
    assert response.status_code == 303
    rid = replacement_id(response.headers["Location"])

    [row] = _rows(session)
    assert (row.id, row.status, row.payment, row.fee_cents) == (rid, "provisioning", "included", 0)
    assert (row.reason, row.old_domain_id, row.new_domain.name) == (
        "critical_score",
        domain.id,
        name,
    )
    assert row.new_domain.purchase_state == "selected" and row.new_domain.price_cents
    [run] = _runs(session)
    assert (run.key, run.payload) == (
        f"replacement:{rid}",
        {"deployment": "replace-domain/on-demand", "parameters": {"replacement_id": rid}},
    )

    progress = client.get(f"/dashboard/replacements/{rid}").get_data(as_text=True)
    assert f"Replacing {domain.name} with {name}" in progress
    assert "We are setting up your new domain." in progress
    assert "Retire the old domain" in progress and "Included in your package" in progress
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert f"Replacing {domain.name} with {name}: being set up." in dashboard
    assert "Replace this domain" not in dashboard


def test_the_progress_document_follows_the_mirror_and_answers_304_while_unchanged(
    app: Flask, session: Session
) -> None:
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    critical(session, domain)
    session.commit()
    name = free_name("polledswap")
    pick(client, domain.id, name)
    rid = replacement_id(confirm(client, domain.id, name).headers["Location"])
    url = f"/dashboard/replacements/{rid}/progress.json"
    first = client.get(url)
    doc = first.get_json()
    assert (doc["status"], doc["done"], doc["total"]) == ("provisioning", 0, len(REPLACEMENT_STEPS))
    assert [s["key"] for s in doc["steps"]] == list(REPLACEMENT_STEPS)
    tag = first.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    session.add(
        ProvisioningStep(
            provision_id=provision.id,
            step_key=replacement_step_key(rid, "buy_domains"),
            status="completed",
            attempt=1,
            started_at=utcnow() - timedelta(minutes=1),
            finished_at=utcnow(),
        )
    )
    session.commit()
    changed = client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.get_json()["done"] == 1
    assert changed.get_json()["steps"][0]["status_words"] == "Done"


def test_a_second_request_for_the_same_domain_is_refused_and_the_next_one_is_charged(
    app: Flask, session: Session
) -> None:
    client, provision = _student(app, session)
    first, second = session.scalars(
        select(Domain).where(Domain.provision_id == provision.id).order_by(Domain.id)
    ).all()[:2]
    critical(session, first)
    second.burned_at = utcnow()
    session.commit()
    name = free_name("onceswap")
    pick(client, first.id, name)
    rid = replacement_id(confirm(client, first.id, name).headers["Location"])
    # Again from a stale tab: the request already made is shown, nothing new is recorded.
    again = confirm(client, first.id, free_name("twiceswap"))
    assert again.headers["Location"] == f"/dashboard/replacements/{rid}"
    assert client.get(f"/dashboard/domains/{first.id}/replace").status_code == 303
    assert len(_rows(session)) == 1 and len(_runs(session)) == 1

    # The included one is used: the next burned domain costs the tier's fee.
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Marked burned by your instructor" in dashboard
    page = client.get(f"/dashboard/domains/{second.id}/replace").get_data(as_text=True)
    assert "This replacement costs $29, charged to your card on file." in page


def test_a_name_taken_meanwhile_is_refused_and_nothing_is_recorded(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    critical(session, domain)
    session.commit()
    name = free_name("raceswap")
    assert pick(client, domain.id, name).status_code == 302
    # Another student's order takes the name before Ann confirms.
    make_provision(session, make_user(session, "bo@example.com"), domains=[name])
    session.commit()
    page = confirm(client, domain.id, name, follow_redirects=True).get_data(as_text=True)
    assert f"Some of your domains are no longer available: {name} (Already chosen" in page
    assert _rows(session) == [] and _runs(session) == []
    # Registered elsewhere after Ann's (now stale) check: the re-check before recording says so.
    late = free_name("lateswap")
    client.post(f"/dashboard/domains/{domain.id}/replace", data={"action": "remove", "name": name})
    pick(client, domain.id, late)
    portal_sandbox.control("POST", "/zapmail/unavailable", json={"names": [late]})
    session.execute(
        update(DomainCheck)
        .where(DomainCheck.name == late)
        .values(checked_at=utcnow() - timedelta(hours=2))
    )
    session.commit()
    page = confirm(client, domain.id, late, follow_redirects=True).get_data(as_text=True)
    assert f"{late} can no longer be bought (Taken: someone already owns this domain.)" in page
    assert _rows(session) == [] and _runs(session) == []
    # A name someone else owns cannot even be picked.
    taken = "takenswap.com"
    client.post(f"/dashboard/domains/{domain.id}/replace", data={"action": "check", "name": taken})
    refused = client.post(f"/dashboard/domains/{domain.id}/replace", data={"action": "continue"})
    assert refused.headers["Location"] == f"/dashboard/domains/{domain.id}/replace"


def test_another_students_domain_and_replacement_answer_404(app: Flask, session: Session) -> None:
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    critical(session, domain)
    session.commit()
    name = free_name("mineswap")
    pick(client, domain.id, name)
    rid = replacement_id(confirm(client, domain.id, name).headers["Location"])
    other_domain = session.scalars(
        select(Domain).where(Domain.provision_id == provision.id).order_by(Domain.id)
    ).all()[1]
    critical(session, other_domain)
    session.commit()
    bob, _ = _student(app, session, "bob@example.com")
    for method, url in (
        ("GET", f"/dashboard/domains/{other_domain.id}/replace"),
        ("POST", f"/dashboard/domains/{other_domain.id}/replace"),
        ("GET", f"/dashboard/domains/{other_domain.id}/replace/confirm"),
        ("POST", f"/dashboard/domains/{other_domain.id}/replace/confirm"),
        ("GET", f"/dashboard/replacements/{rid}"),
        ("GET", f"/dashboard/replacements/{rid}/progress.json"),
        ("POST", f"/dashboard/replacements/{rid}/pay"),
    ):
        response = bob.open(url, method=method, data={"new_domain": "x.com", "action": "check"})
        assert response.status_code == 404, (method, url)
        assert name not in response.get_data(as_text=True)
    assert len(_rows(session)) == 1


def test_a_finished_replacement_reads_replaced_by_and_the_new_mailboxes_warm_up_from_their_run(
    app: Flask, session: Session
) -> None:
    client, provision = _student(app, session)
    provision.activated_at = utcnow() - timedelta(days=40)
    add_snapshots(session, provision, days=40)
    old = first_domain(session, provision)
    new = Domain(
        provision_id=provision.id,
        name=free_name("warmswap"),
        purchase_state="purchased",
        status="ACTIVE",
        dmarc_email="dmarc@example.com",
    )
    session.add(new)
    session.flush()
    for username in ("tim", "tim.keen"):
        MailboxFactory(session=session, domain=new, username=username)
    row = DomainReplacement(
        provision_id=provision.id,
        old_domain_id=old.id,
        new_domain_id=new.id,
        reason="critical_score",
        payment="included",
        status="completed",
        paid_at=utcnow() - timedelta(hours=2),
        completed_at=utcnow(),
    )
    session.add(row)
    session.flush()
    old.retired_at = utcnow()
    switched_on = utcnow() - timedelta(hours=1)
    session.add(
        ProvisioningStep(
            provision_id=provision.id,
            step_key=replacement_step_key(row.id, "warmup"),
            status="completed",
            attempt=1,
            started_at=switched_on,
            finished_at=switched_on,
        )
    )
    session.commit()

    page = client.get("/dashboard").get_data(as_text=True)
    assert f"Replaced by {new.name}" in page and f"Replaces {old.name}" in page
    assert page.count("No longer sending") == 2
    assert "This mailbox no longer sends; it is removed at its renewal." in page
    records = page.split('id="domain-health"', 1)[1].split("</section>", 1)[0]
    assert new.name in records and old.name not in records
    # The new mailboxes warm up from the replacement's run, not from the order's first warmup.
    assert "Warming up: 14 days left." in page
    assert "Waiting for the first health score." not in page
    progress = client.get(f"/dashboard/replacements/{row.id}").get_data(as_text=True)
    assert 'data-status="completed"' in progress and "the old one is retired" in progress

    # The retired domain's mailboxes count nowhere: 4 live old ones and the 2 new ones.
    loaded = insights.load_provision(session, provision.user_id)
    assert loaded is not None
    assert len(insights.dashboard(loaded)["mailboxes"]) == 6


def test_a_mailbox_labelled_burned_by_the_warmup_sync_makes_its_domain_replaceable(
    app: Flask, session: Session
) -> None:
    """The issue names health labels as a burn signal: PlusVibe's warmup health, per mailbox."""
    client, provision = _student(app, session)
    domain = first_domain(session, provision)
    page = client.get(f"/dashboard/domains/{domain.id}/replace").get_data(as_text=True)
    assert "is healthy, so it cannot be replaced yet" in page
    domain.mailboxes[0].health_label = "burned"
    session.commit()
    page = client.get(f"/dashboard/domains/{domain.id}/replace").get_data(as_text=True)
    assert "is healthy, so it cannot be replaced yet" not in page
    assert "1 of 1 included replacement left this month." in page
    name = free_name("labelswap")
    pick(client, domain.id, name)
    assert confirm(client, domain.id, name).status_code == 303
    [row] = _rows(session)
    assert (row.reason, row.status) == ("health_label", "provisioning")
