"""Refresh one student's dashboard: vendor states, today's warmup snapshot, the lead count.

Reads Zapmail (domain and mailbox states), PlusVibe (account statistics) and HeyReach (lead
count) and writes them to the app DB mirror. Read-only at the vendors and safe to rerun.
Deployment: ``refresh-dashboard/on-demand``, started by the dashboard's refresh button.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

from prefect import flow
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from sqlalchemy import select

from core.models import Domain
from core.models import Mailbox
from core.models import PurchaseState
from tasks import runtime
from tasks.heyreach import record_lead_count
from tasks.policies import vendor_task_options
from tasks.warmup_sync import sync_warmup_batch
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active


def run_name() -> str:
    """Name the run after the provision it refreshes."""
    return f"refresh-{flow_run.parameters.get('provision_id')}"


@task(name="list-resources", **vendor_task_options(None))
def list_resources(provision_id: int) -> tuple[list[str], list[str]]:
    """The provision's bought domains and its mailbox addresses."""
    with runtime.db() as session:
        domains = session.scalars(
            select(Domain.name).where(
                Domain.provision_id == provision_id,
                Domain.purchase_state == PurchaseState.PURCHASED.value,
            )
        ).all()
        addresses = session.scalars(
            select(Mailbox.address).join(Domain).where(Domain.provision_id == provision_id)
        ).all()
    return sorted(domains), sorted(addresses)


@flow(name="refresh-dashboard", flow_run_name=run_name)
def refresh_dashboard(provision_id: int) -> dict[str, Any]:
    """Bring one provision's dashboard numbers up to date."""
    domains, addresses = list_resources(provision_id)
    if domains:
        check_domains_active(provision_id, domains)
    if addresses:
        check_mailboxes_active(provision_id, addresses)
    # The same code path as the scheduled warmup sync, for this one provision.
    warmup = sync_warmup_batch([provision_id], datetime.now(UTC).date())
    leads = record_lead_count(provision_id)
    if warmup["failed"]:
        raise RuntimeError("PlusVibe could not list the workspace; the other numbers are stored")
    create_markdown_artifact(
        key=f"refresh-{provision_id}",
        markdown=f"# Dashboard refresh of provision {provision_id}\n\n"
        f"- domains checked: {len(domains)}\n- mailboxes checked: {len(addresses)}\n"
        f"- warmup snapshots written: {warmup['snapshots']}\n- HeyReach leads: {leads}",
        description=f"Provision {provision_id}: what the refresh read",
    )
    return {"provision_id": provision_id, "snapshots": warmup["snapshots"], "leads": leads}


if __name__ == "__main__":
    import sys

    refresh_dashboard(int(sys.argv[1]))
