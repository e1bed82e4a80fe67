"""Tasks of the sweeper: find runs waiting on vendors and resume those whose resources are ready."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.exceptions import ObjectNotFound
from prefect.exceptions import PrefectException
from prefect.flow_runs import resume_flow_run
from prefect.logging import get_run_logger
from sqlalchemy import select

from core.models import Mailbox
from core.models import Provision
from core.models import PurchaseState
from tasks import runtime
from tasks.policies import vendor_task_options


@task(name="find-waiting-runs", **vendor_task_options(None))
def find_waiting(limit: int = 500) -> list[dict[str, object]]:
    """Return the provisions whose run waits on a vendor, with what each waits for."""
    with runtime.db() as session:
        provisions = session.scalars(
            select(Provision)
            .where(Provision.waiting_for.is_not(None), Provision.current_flow_run_id.is_not(None))
            .order_by(Provision.waiting_since)
            .limit(limit)
        ).all()
        found = []
        for provision in provisions:
            domains = [d for d in provision.domains if d.purchase_state == PurchaseState.PURCHASED]
            found.append(
                {
                    "provision_id": provision.id,
                    "waiting_for": provision.waiting_for,
                    "flow_run_id": provision.current_flow_run_id,
                    "domains": sorted(d.name for d in domains),
                    "addresses": sorted(
                        session.scalars(
                            select(Mailbox.address).where(
                                Mailbox.domain_id.in_([d.id for d in domains])
                            )
                        )
                    ),
                }
            )
        return found


@task(name="resume-run", **vendor_task_options(None, retries=2))
def resume_run(flow_run_id: str) -> bool:
    """Resume a suspended run; False if it is not suspended (already resumed, or polling)."""
    try:
        resume_flow_run(UUID(flow_run_id))
    except (ObjectNotFound, PrefectException) as exc:
        # NotPausedError and friends: someone else resumed it, or it never suspended.
        get_run_logger().info("run %s not resumed: %s", flow_run_id, exc)
        return False
    return True
