"""Apply a student's website change: every live cold domain forwards to the new site, or nowhere.

The dashboard stores the wanted website on the provision and starts this run through the outbox;
the run reads the provision again, so two quick changes both end on the latest one. Safe to
rerun: it lists Zapmail first and changes only what differs. Deployment:
``forwarding/on-demand``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.forwarding import apply_forwarding
from tasks.guards import StaleRunError


def run_name() -> str:
    """Name the run after the provision it changes."""
    return f"forwarding-{flow_run.parameters.get('provision_id')}"


@flow(name="forwarding", flow_run_name=run_name)
def forwarding(provision_id: int, request: str = "") -> dict[str, Any]:
    """Make the provision's domains forward where the student now wants (``request``: its key)."""
    try:
        # Without a request key (a run started by hand) each run is its own request.
        result = apply_forwarding(provision_id, request or f"run-{flow_run.id}")
    except StaleRunError as exc:
        # Cancelled: its domains lapse at renewal and are left as they are.
        return {"provision_id": provision_id, "status": "stale", "reason": str(exc)}
    return {"provision_id": provision_id, "status": "applied", **result}


if __name__ == "__main__":
    import sys

    forwarding(int(sys.argv[1]))
