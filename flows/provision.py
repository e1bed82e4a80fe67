"""Provision one paid order: Zapmail workspace, domains, DMARC, mailboxes, PlusVibe, HeyReach.

Parameters are ids only. Every step is a cached, retriable task mirrored into the app DB, so a
retry (Prefect UI, admin page, a duplicate start) replays finished steps from cache and resumes
at the first unfinished one. Waits for domains, mailboxes and exported accounts suspend the run
when it has a deployment. Every mutating step checks the run's claim first (tasks/guards.py): a
run of a cancelled order, or one a newer run superseded, ends quietly with nothing changed.
Deployment: ``provision/on-demand``, started by the outbox sender after a paid checkout.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.objects import State
from prefect.flows import Flow
from prefect.runtime import flow_run

from tasks.guards import StaleRunError
from tasks.heyreach import ensure_heyreach_list
from tasks.pipeline import finish_provisioning
from tasks.pipeline import mark_provision_failed
from tasks.pipeline import start_provisioning
from tasks.pipeline import student_email
from tasks.plusvibe import check_accounts_connected
from tasks.plusvibe import configure_warmup
from tasks.plusvibe import ensure_plusvibe_workspace
from tasks.waits import wait_until
from tasks.zapmail import buy_domains
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active
from tasks.zapmail import create_mailboxes
from tasks.zapmail import ensure_zapmail_workspace
from tasks.zapmail import export_to_plusvibe
from tasks.zapmail import set_dmarc


def run_name() -> str:
    """Name the run after the student, so operators find it in the Prefect UI."""
    provision_id = flow_run.parameters.get("provision_id")
    return f"provision-{provision_id}-{student_email(provision_id)}"


def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """Mirror a failed, crashed or cancelled run into the provision's status."""
    # Prefect calls hooks with these exact keyword names (the runner does, on a crash).
    provision_id = flow_run.parameters.get("provision_id")
    if provision_id is None:
        return
    exc = state.result(raise_on_failure=False)
    reason = f"run {flow_run.name} {state.type.value.lower()}: {state.message or exc}"
    mark_provision_failed(
        int(provision_id),
        exc if isinstance(exc, BaseException) else None,
        reason,
        str(flow_run.id),
    )


@flow(
    name="provision",
    flow_run_name=run_name,
    persist_result=True,
    result_serializer="json",
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
    on_cancellation=[on_run_failed],
)
def provision(provision_id: int) -> dict[str, Any]:
    """Provision everything a paid order includes, resuming from the first unfinished step."""
    try:
        return _provision(provision_id)
    except StaleRunError as exc:
        # Cancelled, or a newer run claimed the order: this run stops quietly, changing nothing.
        return {"provision_id": provision_id, "status": "stale", "reason": str(exc)}


def _provision(provision_id: int) -> dict[str, Any]:
    plan = start_provisioning(provision_id)
    if plan.get("duplicate_of"):
        # Another live run owns this provision; doing nothing here is what keeps it consistent.
        return {
            "provision_id": provision_id,
            "status": "duplicate",
            "live_run": plan["duplicate_of"],
        }
    domains, addresses = plan["domains"], plan["addresses"]

    ensure_zapmail_workspace(provision_id)
    buy_domains(provision_id, domains)
    wait_until(
        provision_id,
        "wait_domains",
        waiting_for="domains_active",
        check=check_domains_active,
        items=domains,
        summary="Registering your domains and configuring DNS (MX, SPF, DKIM)",
    )
    set_dmarc(provision_id, domains)
    create_mailboxes(provision_id, addresses)
    wait_until(
        provision_id,
        "wait_mailboxes",
        waiting_for="mailboxes_active",
        check=check_mailboxes_active,
        items=addresses,
        summary="Google is creating your mailboxes",
    )
    ensure_plusvibe_workspace(provision_id)
    export_to_plusvibe(provision_id, addresses)
    wait_until(
        provision_id,
        "connect_plusvibe",
        waiting_for="accounts_connected",
        check=check_accounts_connected,
        items=addresses,
        summary="Connecting your mailboxes to the warmup tool",
    )
    configure_warmup(provision_id, addresses)
    ensure_heyreach_list(provision_id)
    return finish_provisioning(provision_id)


if __name__ == "__main__":
    import sys

    provision(int(sys.argv[1]))
