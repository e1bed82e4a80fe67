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
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.objects import State
from prefect.flows import Flow
from prefect.runtime import flow_run

from core.models import Upgrade
from core.pipeline import upgrade_step_key
from tasks import runtime
from tasks.guards import StaleRunError
from tasks.plusvibe import check_accounts_connected
from tasks.plusvibe import configure_warmup
from tasks.upgrade import finish_upgrade
from tasks.upgrade import mark_upgrade_failed
from tasks.upgrade import start_upgrade
from tasks.waits import wait_until
from tasks.zapmail import buy_domains
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active
from tasks.zapmail import create_mailboxes
from tasks.zapmail import export_to_plusvibe
from tasks.zapmail import set_dmarc


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


def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """Mirror a failed, crashed or cancelled run into the upgrade and its provision."""
    # Prefect calls hooks with these exact keyword names (the runner does, on a crash).
    upgrade_id = flow_run.parameters.get("upgrade_id")
    if upgrade_id is None:
        return
    exc = state.result(raise_on_failure=False)
    reason = f"run {flow_run.name} {state.type.value.lower()}: {state.message or exc}"
    mark_upgrade_failed(
        int(upgrade_id),
        exc if isinstance(exc, BaseException) else None,
        reason,
        str(flow_run.id),
    )


@flow(
    name="upgrade",
    flow_run_name=run_name,
    persist_result=True,
    result_serializer="json",
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
    on_cancellation=[on_run_failed],
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
    key = partial(upgrade_step_key, upgrade_id)

    buy_domains(provision_id, domains, step_key=key("buy_domains"))
    wait_until(
        provision_id,
        key("wait_domains"),
        waiting_for="domains_active",
        check=check_domains_active,
        items=domains,
        summary="Registering your new domains and configuring DNS (MX, SPF, DKIM)",
    )
    set_dmarc(provision_id, domains, step_key=key("dmarc"))
    create_mailboxes(provision_id, addresses, step_key=key("mailboxes"))
    wait_until(
        provision_id,
        key("wait_mailboxes"),
        waiting_for="mailboxes_active",
        check=check_mailboxes_active,
        items=addresses,
        summary="Google is creating your new mailboxes",
    )
    export_to_plusvibe(provision_id, addresses, step_key=key("connect_plusvibe"))
    wait_until(
        provision_id,
        key("connect_plusvibe"),
        waiting_for="accounts_connected",
        check=check_accounts_connected,
        items=addresses,
        summary="Connecting your new mailboxes to your warmup workspace",
    )
    configure_warmup(provision_id, addresses, step_key=key("warmup"))
    return finish_upgrade(upgrade_id)


if __name__ == "__main__":
    import sys

    upgrade(int(sys.argv[1]))
