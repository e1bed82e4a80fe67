"""The replace-domain flow end to end: real Prefect server, real PostgreSQL, sandbox over HTTP.

A student provisioned on Starter (3 domains, 2 mailboxes each) replaces one burned domain: the
new domain is bought once, gets DMARC and forwarding, mailboxes with the old domain's usernames
and sender names join the same PlusVibe workspace with warmup on; the old domain's mailboxes stop
warming, are scheduled for removal at renewal and the old domain stops renewing. The provision
stays active throughout. Reruns spend nothing; unpaid replacements touch nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from prefect.deployments import run_deployment
from sqlalchemy import select

from core.cancellation import request_cancellation
from core.models import Domain
from core.models import DomainReplacement
from core.models import Notification
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.pipeline import REPLACEMENT_STEPS
from core.pipeline import replacement_step_key
from core.replacements import live_domains
from core.replacements import replacement_key
from core.replacements import request_replacement
from flows.cancel_provision import cancel_provision
from flows.replace_domain import replace_domain
from flows.sweep_waiting import sweep_waiting
from tests.flows.conftest import Pipeline
from tests.flows.test_upgrade import charges
from tests.flows.test_upgrade import created_mailboxes
from tests.flows.test_upgrade import drive
from tests.flows.test_upgrade import provisioned
from tests.support.worker import read_run
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect
log = logging.getLogger(__name__)
WEBSITE = "https://student-site.example/"


def requested(pipeline: Pipeline, provision_id: int, *, included: bool = True) -> int:
    """A replacement of the provision's first domain, requested as the portal does; its id.

    Included: queued at once (provisioning). Otherwise the tier's allowance is used up and the
    replacement waits for its invoice (pending_payment).
    """
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    if not included:
        row.tier.replacements_included = 0
    old = sorted(live_domains(row), key=lambda d: d.name)[0]
    (new_name,) = pipeline.available_names(1, f"swap{provision_id}x")
    replacement = request_replacement(
        session,
        provision=row,
        old_domain=old,
        new_name=new_name,
        price_cents=None,
        requested_by_id=None,
        by_admin=True,
    )
    session.commit()
    return replacement.id


def replacement_steps(pipeline: Pipeline, provision_id: int, replacement_id: int) -> dict[str, str]:
    """Each of the replacement's mirror steps and its status."""
    prefix = replacement_step_key(replacement_id, "")
    rows = pipeline.session.scalars(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id,
            ProvisioningStep.step_key.startswith(prefix),
        )
    )
    return {row.step_key.removeprefix(prefix): row.status for row in rows}


def sandbox_state(pipeline: Pipeline) -> dict[str, Any]:
    """Zapmail's and PlusVibe's own state, from the sandbox's control plane."""
    get = pipeline.sandbox.control
    return {
        "zapmail": get("GET", "/zapmail/state").json(),
        "plusvibe": get("GET", "/plusvibe/state").json(),
    }


def names(pipeline: Pipeline, replacement_id: int) -> tuple[str, str]:
    """(old domain, new domain) of the replacement."""
    pipeline.session.expire_all()
    row = pipeline.session.get(DomainReplacement, replacement_id)
    return row.old_domain.name, row.new_domain.name


def assert_replaced_once(pipeline: Pipeline, provision_id: int, replacement_id: int) -> None:
    """New domain bought once and set up with the old senders; old domain retired; all at once."""
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    replacement = session.get(DomainReplacement, replacement_id)
    old, new = replacement.old_domain, replacement.new_domain
    assert (row.status, row.waiting_for) == ("active", None)
    assert replacement.status == "completed" and replacement.completed_at is not None
    # Every domain charged exactly once: the three first ones and the new one.
    assert charges(pipeline) == Counter(d.name for d in row.domains) and len(row.domains) == 4
    assert new.status == "ACTIVE" and new.dmarc_email and new.retired_at is None
    assert old.retired_at is not None and old.auto_renew is False
    # The same senders on the new domain, each mailbox created once.
    senders = sorted((m.username, m.first_name, m.last_name) for m in old.mailboxes)
    assert sorted((m.username, m.first_name, m.last_name) for m in new.mailboxes) == senders
    addresses = [m.address for d in row.domains for m in d.mailboxes]
    assert created_mailboxes(pipeline) == Counter(addresses) and len(addresses) == 8
    assert all(m.status == "ACTIVE" and m.warmup_enabled for m in new.mailboxes)
    assert all(not m.warmup_enabled and m.removal_scheduled_at for m in old.mailboxes)
    # What the vendors hold: warmup on for the new mailboxes only, the old ones going away.
    state = sandbox_state(pipeline)
    warming = {a["email"]: a["warmup_status"] for a in state["plusvibe"]["accounts"]}
    assert {m.address: warming[m.address] for m in new.mailboxes} == dict.fromkeys(
        [m.address for m in new.mailboxes], "ACTIVE"
    )
    assert {m.address: warming[m.address] for m in old.mailboxes} == dict.fromkeys(
        [m.address for m in old.mailboxes], "INACTIVE"
    )
    others = [m.address for d in row.domains if d.id not in (old.id, new.id) for m in d.mailboxes]
    assert {warming[a] for a in others} == {"ACTIVE"}, "the other domains keep warming"
    removed = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_removal_scheduled"))
    assert removed == Counter(m.address for m in old.mailboxes)
    renewals = {d["domain"]: d["autoRenew"] for d in state["zapmail"]["domains"]}
    assert renewals[old.name] is False
    assert all(renewals[d.name] for d in row.domains if d.id != old.id)
    assert replacement_steps(pipeline, provision_id, replacement_id) == dict.fromkeys(
        REPLACEMENT_STEPS, "completed"
    )


def route_calls(pipeline: Pipeline) -> Counter[str]:
    """Requests per vendor route answered so far (whatever the status)."""
    counts: Counter[str] = Counter()
    for vendor, data in pipeline.sandbox.stats()["vendors"].items():
        for route, codes in data["routes"].items():
            counts[f"{vendor} {route}"] += sum(codes.values())
    return counts


@pytest.mark.usefixtures("fast_limits")
def test_a_replacement_buys_the_new_domain_once_retires_the_old_and_a_rerun_spends_nothing(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline, email="rosa@student.test")
    session = pipeline.session
    session.expire_all()
    session.get(Provision, provision_id).forward_to = WEBSITE
    session.commit()
    replacement_id = requested(pipeline, provision_id)
    old_name, new_name = names(pipeline, replacement_id)
    calls_before = route_calls(pipeline)

    state = replace_domain(replacement_id, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert (result["status"], result["old_domain"], result["new_domain"]) == (
        "completed",
        old_name,
        new_name,
    )
    assert_replaced_once(pipeline, provision_id, replacement_id)
    # Forwarding was set on the new domain only (the old ones were provisioned without a site).
    forwarded = [e["item"] for e in pipeline.sandbox.ledger(kind="domain_forwarding_set")]
    assert forwarded == [new_name]
    calls = route_calls(pipeline) - calls_before
    # The money and the changes, exactly: one buy, one DMARC, one forwarding, one create, one
    # export, warmup settings and switch-on, then the three retirement changes.
    changes = {
        "zapmail POST /v2/domains/buy": 1,
        "zapmail POST /v2/domains/dmarc": 1,
        "zapmail POST /v2/domains/forwarding": 1,
        "zapmail POST /v2/mailboxes": 1,
        "zapmail POST /v2/exports/mailboxes": 1,
        "plusvibe PUT /account/bulk-update": 1,
        "plusvibe PATCH /account/bulk-update-warmup": 2,
        "zapmail PUT /v2/mailboxes/scheduled-removal": 1,
        "zapmail POST /v2/domains/update-auto-renew": 2,
    }
    assert {route: calls[route] for route in changes} == changes, calls
    log.info("vendor calls of one replacement: %s", dict(sorted(calls.items())))
    # The student is told once; operators find the run by name and tags, and read the summary.
    session.expire_all()
    notices = session.scalars(
        select(Notification.key).where(Notification.key.startswith("replacement-"))
    ).all()
    assert notices == [f"replacement-complete:{replacement_id}"]
    run = read_run(state.state_details.flow_run_id)
    assert run.name == f"replacement-{replacement_id}-rosa@student.test"
    assert {"replacement", f"replacement-{replacement_id}", f"provision-{provision_id}"} <= set(
        run.tags
    )
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"replacement-{replacement_id}"])
            )
        )
    assert new_name in artifact.data and old_name in artifact.data

    ledger_before = len(pipeline.sandbox.ledger())
    total_before = pipeline.sandbox.stats()["total"]
    rerun = replace_domain(replacement_id, return_state=True)

    assert rerun.is_completed() and rerun.result()["status"] == "completed"
    assert len(pipeline.sandbox.ledger()) == ledger_before
    assert pipeline.sandbox.stats()["total"] == total_before
    assert_replaced_once(pipeline, provision_id, replacement_id)


@pytest.mark.usefixtures("fast_limits")
def test_an_unpaid_replacement_refuses_to_run_and_buys_nothing(pipeline: Pipeline) -> None:
    provision_id = provisioned(pipeline, email="unpaid@student.test")
    replacement_id = requested(pipeline, provision_id, included=False)
    session = pipeline.session
    assert session.get(DomainReplacement, replacement_id).status == "pending_payment"
    ledger_before = pipeline.sandbox.ledger()
    calls_before = pipeline.sandbox.stats()["total"]
    holder_before = session.get(Provision, provision_id).current_flow_run_id

    state = replace_domain(replacement_id, return_state=True)

    assert state.is_failed() and "not paid" in state.message
    assert pipeline.sandbox.stats()["total"] == calls_before
    assert pipeline.sandbox.ledger() == ledger_before
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert (row.status, row.current_flow_run_id) == ("active", holder_before)
    left = session.get(DomainReplacement, replacement_id)
    assert (left.status, left.flow_run_id, left.new_domain.purchase_state) == (
        "pending_payment",
        None,
        "selected",
    )
    assert left.old_domain.retired_at is None
    assert replacement_steps(pipeline, provision_id, replacement_id) == {}
    assert not session.scalars(
        select(Notification).where(Notification.key.startswith("replacement-"))
    ).all()
    assert session.scalar(select(Tier.replacements_included).where(Tier.slug == "starter")) == 0
    assert session.scalars(select(Domain).where(Domain.retired_at.is_not(None))).all() == []


@pytest.mark.usefixtures("worker", "fast_limits")
def test_a_deployed_replacement_suspends_while_its_domain_registers_and_the_sweeper_resumes_it(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline, email="ines@student.test")
    replacement_id = requested(pipeline, provision_id)
    # Only the new domain's activation outlasts the inline grace: the run suspends there.
    pipeline.sandbox.configure(domain_activation_s=600, mailbox_activation_s=0, export_delay_s=0)
    run_id = run_deployment(
        "replace-domain/on-demand",
        parameters={"replacement_id": replacement_id},
        timeout=0,
        idempotency_key=replacement_key(replacement_id),
    ).id

    wait_for(lambda: read_run(run_id).state.is_paused(), timeout_s=120, what="suspend")
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    # The account stays active while the replacement's run waits, and the sweeper can find it.
    assert (row.status, row.waiting_for, row.current_flow_run_id) == (
        "active",
        "domains_active",
        str(run_id),
    )
    assert sweep_waiting()["resumed"] == []  # the new domain is not active yet
    pipeline.sandbox.advance(600)
    assert sweep_waiting()["resumed"] == [provision_id]

    state = drive(run_id)

    assert state.is_completed(), state.message
    assert_replaced_once(pipeline, provision_id, replacement_id)
    assert read_run(run_id).name == f"replacement-{replacement_id}-ines@student.test"


@pytest.mark.usefixtures("fast_limits")
def test_cancelling_the_order_stops_and_cancels_its_replacement_which_then_buys_nothing(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline, email="leaving@student.test")
    replacement_id = requested(pipeline, provision_id)
    with get_client(sync_client=True) as client:
        queued = client.create_flow_run(
            replace_domain, parameters={"replacement_id": replacement_id}
        )
    session = pipeline.session
    session.get(DomainReplacement, replacement_id).flow_run_id = str(queued.id)
    assert request_cancellation(session, provision_id, reason="subscription ended")
    session.commit()

    result = cancel_provision(provision_id)

    assert result["stopped_runs"] == [str(queued.id)]
    assert read_run(queued.id).state.is_cancelled()
    session.expire_all()
    left = session.get(DomainReplacement, replacement_id)
    assert left.status == "cancelled" and "subscription ended" in (left.status_reason or "")
    bought = pipeline.sandbox.ledger(kind="domain_purchase")

    state = replace_domain(replacement_id, return_state=True)

    assert state.is_failed() and "cancelled" in state.message
    assert pipeline.sandbox.ledger(kind="domain_purchase") == bought
    session.expire_all()
    left = session.get(DomainReplacement, replacement_id)
    assert (left.status, left.new_domain.purchase_state) == ("cancelled", "selected")
