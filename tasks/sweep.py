"""Tasks of the sweeper: find runs waiting on vendors and resume those whose resources are ready."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.exceptions import ObjectNotFound
from prefect.exceptions import PrefectException
from prefect.flow_runs import resume_flow_run
from prefect.logging import get_run_logger
from sqlalchemy import select

from core.db import utcnow
from core.models import Provision
from core.vendor_events import ANNOUNCED_BY
from core.vendor_events import wait_fully_announced
from core.vendor_events import waited_items
from core.vendor_events import webhooks_flowing
from tasks import runtime
from tasks.policies import vendor_task_options

# Zapmail announces domain and mailbox changes (portal/webhooks resumes the run). While its
# webhooks arrive, the sweeper is only the safety net for a lost one, so it checks those waits
# on a backoff schedule: a launch-day cohort's status polls would otherwise take most of the
# 200 calls/min that purchases and mailbox creation share. Other waits are checked every sweep.
WEBHOOK_COVERED = frozenset(ANNOUNCED_BY)
BACKOFF_POINTS_S = (120, 240, 480, 960)
BACKOFF_EVERY_S = 900


def due_on_backoff(elapsed_s: float, interval_s: float) -> bool:
    """Whether a point of the backoff schedule fell within the last ``interval_s`` of a wait."""
    since = elapsed_s - interval_s
    points = [p for p in BACKOFF_POINTS_S if since < p <= elapsed_s]
    last = BACKOFF_POINTS_S[-1]
    if elapsed_s > last:
        latest = last + (elapsed_s - last) // BACKOFF_EVERY_S * BACKOFF_EVERY_S
        points += [latest] if since < latest else []
    return bool(points)


@task(name="find-waiting-runs", **vendor_task_options(None))
def find_waiting(limit: int = 500, interval_s: float = 60.0) -> list[dict[str, object]]:
    """Return the provisions whose run waits on a vendor and is due a check, with what it waits for.

    ``interval_s`` is the sweep schedule's interval: a wait that Zapmail's webhooks cover is
    due when a point of its backoff schedule fell since the previous sweep (with 50% slack for
    a late sweep; an extra check costs one call, a missed one up to 15 minutes).
    """
    with runtime.db() as session:
        now = utcnow()
        flowing = webhooks_flowing(session, now)
        provisions = session.scalars(
            select(Provision)
            .where(Provision.waiting_for.is_not(None), Provision.current_flow_run_id.is_not(None))
            .order_by(Provision.waiting_since)
            .limit(limit)
        ).all()
        found = []
        for provision in provisions:
            if flowing and provision.waiting_for in WEBHOOK_COVERED:
                elapsed = (now - (provision.waiting_since or now)).total_seconds()
                # Fully announced but still waiting: the last webhook came while the run was
                # between its check and its suspend and could not resume it. Check at once.
                if not due_on_backoff(elapsed, interval_s * 1.5) and not wait_fully_announced(
                    session, provision
                ):
                    continue
            domains, addresses = waited_items(session, provision)
            found.append(
                {
                    "provision_id": provision.id,
                    "waiting_for": provision.waiting_for,
                    "flow_run_id": provision.current_flow_run_id,
                    "domains": domains,
                    "addresses": addresses,
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
