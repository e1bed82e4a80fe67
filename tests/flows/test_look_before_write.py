"""Look before writing only where an earlier attempt may have written (tasks/attempts.py).

A first attempt writes at once (the calls the budget in test_zapmail_call_budget.py counts);
an attempt after a lost answer looks first and writes nothing twice; a write refused because
its effect is there already finds it instead of failing the run.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from prefect import flow

from core.models import Provision
from flows.provision import provision
from tasks import runtime
from tasks.pipeline import start_provisioning
from tasks.zapmail import buy_domains
from tasks.zapmail import check_domains_active
from tasks.zapmail import create_mailboxes
from tasks.zapmail import ensure_zapmail_workspace
from tasks.zapmail import export_to_plusvibe
from tasks.zapmail import workspace_name
from tests.flows.conftest import Pipeline

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("fast_retries")]

LOST = {"kind": "drop_response", "hold_s": 1.5, "times": 1}


def zapmail_calls(pipeline: Pipeline) -> Counter[str]:
    """Zapmail calls per route since the last stats reset, whatever their status."""
    routes = pipeline.sandbox.stats()["vendors"].get("zapmail", {}).get("routes", {})
    return Counter({route: sum(codes.values()) for route, codes in routes.items()})


def workspaces_named(pipeline: Pipeline, name: str) -> list[dict[str, Any]]:
    state = pipeline.sandbox.control("GET", "/zapmail/state").json()
    return [w for w in state["workspaces"] if w["name"] == name]


@flow
def workspace_run(provision_id: int) -> str:
    """The workspace step on its own, as the provision flow runs it."""
    return ensure_zapmail_workspace(provision_id)


@flow
def up_to_the_mailboxes(provision_id: int) -> list[str]:
    """Workspace, purchase and the domains' wait; returns the addresses to create."""
    plan = start_provisioning(provision_id)
    ensure_zapmail_workspace(provision_id)
    buy_domains(provision_id, plan["domains"])
    deadline = time.monotonic() + 20
    while not check_domains_active(provision_id, plan["domains"]):
        assert time.monotonic() < deadline, "domains never became active"
        time.sleep(0.3)
    return plan["addresses"]


@flow
def mailboxes_run(provision_id: int, addresses: list[str]) -> int:
    """The mailbox step on its own."""
    return create_mailboxes(provision_id, addresses)


@flow
def export_run(provision_id: int, addresses: list[str], step_key: str) -> str | None:
    """One export step under its own key (an upgrade's, a replacement's)."""
    return export_to_plusvibe(provision_id, addresses, step_key=step_key)


def test_a_first_attempt_creates_the_workspace_without_looking(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision(email="wsfirst@student.test")
    pipeline.sandbox.control("POST", "/stats/reset")

    workspace_id = workspace_run(provision_id)

    assert zapmail_calls(pipeline) == Counter({"POST /v2/workspaces": 1})
    assert [w["id"] for w in workspaces_named(pipeline, workspace_name(provision_id))] == [
        workspace_id
    ]


def test_a_lost_workspace_answer_is_looked_up_on_the_retry_never_created_again(
    pipeline: Pipeline,
) -> None:
    pipeline.settings.vendor_timeout_s = 1.0
    provision_id = pipeline.paid_provision(email="wslost@student.test")
    pipeline.sandbox.add_fault(vendor="zapmail", method="POST", path="/v2/workspaces", **LOST)
    pipeline.sandbox.control("POST", "/stats/reset")

    workspace_id = workspace_run(provision_id)

    calls = zapmail_calls(pipeline)
    # The retry looked and found it: no second create (not even one refused for its name).
    assert calls["POST /v2/workspaces"] == 1, calls
    assert calls["GET /v2/workspaces"] >= 1, calls
    assert [w["id"] for w in workspaces_named(pipeline, workspace_name(provision_id))] == [
        workspace_id
    ]
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None and row.zapmail_workspace_id == workspace_id


def test_a_workspace_name_taken_on_a_first_attempt_is_found_not_failed(
    pipeline: Pipeline,
) -> None:
    # Created by an attempt whose step was never mirrored (its counter lost with a DB restore,
    # say): Zapmail refuses the name, and the run takes the workspace that holds it.
    provision_id = pipeline.paid_provision(email="wsnamed@student.test")
    existing = runtime.zapmail().create_workspace(
        workspace_name(provision_id), pipeline.settings.zapmail_billing_details
    )
    pipeline.sandbox.control("POST", "/stats/reset")

    assert workspace_run(provision_id) == existing.id

    calls = zapmail_calls(pipeline)
    assert calls["POST /v2/workspaces"] == 1 and calls["GET /v2/workspaces"] >= 1, calls
    assert len(workspaces_named(pipeline, workspace_name(provision_id))) == 1


def test_a_lost_mailbox_answer_is_looked_up_on_the_retry_never_created_again(
    pipeline: Pipeline,
) -> None:
    pipeline.settings.vendor_timeout_s = 1.0
    provision_id = pipeline.paid_provision(email="mblost@student.test")
    addresses = up_to_the_mailboxes(provision_id)
    pipeline.sandbox.add_fault(vendor="zapmail", method="POST", path="/v2/mailboxes", **LOST)
    pipeline.sandbox.control("POST", "/stats/reset")

    mailboxes_run(provision_id, addresses)

    calls = zapmail_calls(pipeline)
    # The first attempt wrote at once; the retry listed once and found every mailbox.
    assert calls["POST /v2/mailboxes"] == 1, calls
    assert calls["GET /v2/mailboxes/list"] == 1, calls
    created = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_created"))
    assert sorted(created) == sorted(addresses) and set(created.values()) == {1}


def test_an_export_after_an_earlier_one_finds_the_login_instead_of_registering_it_again(
    pipeline: Pipeline,
) -> None:
    provision_id = pipeline.paid_provision(email="loginagain@student.test")
    assert provision(provision_id)["status"] == "active"
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    addresses = sorted(m.address for d in row.domains for m in d.mailboxes)
    pipeline.sandbox.control("POST", "/stats/reset")

    # A first attempt of another step's export (an upgrade's): the login is there already.
    assert export_run(provision_id, addresses, "upgrade-1:connect_plusvibe") is None

    calls = zapmail_calls(pipeline)
    assert calls["POST /v2/exports/accounts/third-party"] == 0, calls
    assert calls["GET /v2/exports/accounts/third-party"] == 1, calls
