"""Replace a burned domain once the replacement is paid or included: a new domain, the same senders.

Parameters are ids only. The run buys the replacement's new domain through the same money-safe
purchase protocol, sets DMARC and forwarding, creates mailboxes with the old domain's usernames
and sender names, connects them to the student's PlusVibe workspace with warmup on, then retires
the old domain (warmup paused, mailboxes removed at renewal, auto-renew off). It reuses the
provisioning tasks (business-keyed on the provision and the new names, so a rerun or a UI retry
never pays twice) with its own step keys (``replacement-<id>:<step>``), and claims the provision
like an upgrade, so waits suspend and the sweeper resumes it. The provision stays active.
Deployment: ``replace-domain/on-demand``, started through the outbox (``replacement:<id>``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from core.models import DomainReplacement
from core.pipeline import RETIRE_STEP
from core.pipeline import replacement_step_key
from flows.sequence import domains_to_warmup
from flows.sequence import mirrored_flow_options
from flows.upgrade import tag_run
from tasks import runtime
from tasks.guards import StaleRunError
from tasks.replacement import finish_replacement
from tasks.replacement import mark_replacement_failed
from tasks.replacement import start_replacement
from tasks.retire_domain import retire_domain


def run_name() -> str:
    """Name the run after the replacement and the student, so operators find it in the UI."""
    replacement_id = flow_run.parameters.get("replacement_id")
    try:
        with runtime.db() as session:
            replacement = session.get(DomainReplacement, replacement_id)
            student = replacement.provision.user.email if replacement else "unknown"
    except Exception:  # noqa: BLE001 - a name must never stop a run
        student = "unknown"
    return f"replacement-{replacement_id}-{student}"


@flow(
    name="replace-domain",
    flow_run_name=run_name,
    **mirrored_flow_options("replacement_id", mark_replacement_failed),
)
def replace_domain(replacement_id: int) -> dict[str, Any]:
    """Set up a paid replacement's new domain and retire the old one, from the first open step."""
    try:
        return _replace(replacement_id)
    except StaleRunError as exc:
        # Cancelled, or a newer run claimed the order: this run stops quietly, changing nothing.
        return {"replacement_id": replacement_id, "status": "stale", "reason": str(exc)}


def _replace(replacement_id: int) -> dict[str, Any]:
    plan = start_replacement(replacement_id)
    provision_id = plan["provision_id"]
    tag_run("replacement", f"replacement-{replacement_id}", f"provision-{provision_id}")
    if plan.get("completed"):
        return {
            "replacement_id": replacement_id,
            "provision_id": provision_id,
            "status": "completed",
        }
    if plan.get("duplicate_of"):
        # Another run of this replacement is live; doing nothing here keeps it consistent.
        return {
            "replacement_id": replacement_id,
            "status": "duplicate",
            "live_run": plan["duplicate_of"],
        }
    key = partial(replacement_step_key, replacement_id)
    domains_to_warmup(provision_id, plan["domains"], plan["addresses"], key=key, new="new ")
    retire_domain(replacement_id, step_key=key(RETIRE_STEP.key))
    return finish_replacement(replacement_id)


if __name__ == "__main__":
    import sys

    replace_domain(int(sys.argv[1]))
