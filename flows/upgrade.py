"""Upgrade a provision to a larger tier once the upgrade is paid: the extra domains and mailboxes.

Parameters are ids only. The run buys the upgrade's new domains, sets DMARC, creates their
mailboxes, connects them to the student's existing PlusVibe workspace and switches warmup on,
then moves the provision to the new tier. It reuses the provisioning tasks (business-keyed on
the provision and the new names, so a rerun or a UI retry never pays twice) with its own step
keys, and claims the provision like a provisioning run, so waits suspend and the sweeper
resumes it. Deployment: ``upgrade/on-demand``, started by the portal once both payments are in.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from uuid import UUID

from prefect import flow
from prefect import get_client
from prefect.runtime import flow_run

from core.models import Upgrade
from core.pipeline import upgrade_step_key
from flows.sequence import domains_to_warmup
from flows.sequence import mirrored_flow_options
from tasks import runtime
from tasks.guards import StaleRunError
from tasks.upgrade import finish_upgrade
from tasks.upgrade import mark_upgrade_failed
from tasks.upgrade import start_upgrade


def run_name() -> str:
    """Name the run after the upgrade and the student, so operators find it in the Prefect UI."""
    upgrade_id = flow_run.parameters.get("upgrade_id")
    try:
        with runtime.db() as session:
            upgrade = session.get(Upgrade, upgrade_id)
            student = upgrade.provision.user.email if upgrade else "unknown"
    except Exception:  # noqa: BLE001 - a name must never stop a run
        student = "unknown"
    return f"upgrade-{upgrade_id}-{student}"


def tag_run(*tags: str) -> None:
    """Add tags to the current run (the deployment's stay), so operators can filter by id."""
    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(flow_run.id)).tags
            client.update_flow_run(UUID(flow_run.id), tags=sorted({*current, *tags}))
    except Exception:  # noqa: BLE001 - tags are a convenience, never a reason to stop
        return


@flow(
    name="upgrade",
    flow_run_name=run_name,
    **mirrored_flow_options("upgrade_id", mark_upgrade_failed),
)
def upgrade(upgrade_id: int) -> dict[str, Any]:
    """Add a paid upgrade's domains and mailboxes, resuming from the first unfinished step."""
    try:
        return _upgrade(upgrade_id)
    except StaleRunError as exc:
        # Cancelled, or a newer run claimed the order: this run stops quietly, changing nothing.
        return {"upgrade_id": upgrade_id, "status": "stale", "reason": str(exc)}


def _upgrade(upgrade_id: int) -> dict[str, Any]:
    plan = start_upgrade(upgrade_id)
    provision_id = plan["provision_id"]
    tag_run("upgrade", f"upgrade-{upgrade_id}", f"provision-{provision_id}")
    if plan.get("completed"):
        return {"upgrade_id": upgrade_id, "provision_id": provision_id, "status": "completed"}
    if plan.get("duplicate_of"):
        # Another run of this upgrade is live; doing nothing here is what keeps it consistent.
        return {"upgrade_id": upgrade_id, "status": "duplicate", "live_run": plan["duplicate_of"]}
    domains, addresses = plan["domains"], plan["addresses"]

    domains_to_warmup(
        provision_id, domains, addresses, key=partial(upgrade_step_key, upgrade_id), new="new "
    )
    return finish_upgrade(upgrade_id)


if __name__ == "__main__":
    import sys

    upgrade(int(sys.argv[1]))
