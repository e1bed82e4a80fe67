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
from prefect.runtime import flow_run

from flows.sequence import domains_to_warmup
from flows.sequence import mirrored_flow_options
from tasks.guards import StaleRunError
from tasks.heyreach import ensure_heyreach_list
from tasks.pipeline import finish_provisioning
from tasks.pipeline import mark_provision_failed
from tasks.pipeline import start_provisioning
from tasks.plusvibe import ensure_plusvibe_workspace
from tasks.summaries import student_email
from tasks.zapmail import ensure_zapmail_workspace


def run_name() -> str:
    """Name the run after the student, so operators find it in the Prefect UI."""
    provision_id = flow_run.parameters.get("provision_id")
    return f"provision-{provision_id}-{student_email(provision_id)}"


@flow(
    name="provision",
    flow_run_name=run_name,
    **mirrored_flow_options("provision_id", mark_provision_failed),
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
    domains_to_warmup(
        provision_id,
        domains,
        addresses,
        before_export=lambda: ensure_plusvibe_workspace(provision_id),
    )
    ensure_heyreach_list(provision_id)
    return finish_provisioning(provision_id)


if __name__ == "__main__":
    import sys

    provision(int(sys.argv[1]))
