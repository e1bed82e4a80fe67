"""Release a cancelled order's vendor resources: nothing keeps billing or warming silently.

Parameters are the provision id only. In order: check the provision is cancelled, stop its live
provisioning or upgrade run (so nothing is bought after this point), switch warmup off at
PlusVibe, schedule the mailboxes for removal at Zapmail's next renewal, turn domain auto-renew
off, then record the outcome (step mirror, audit row, artifact) and email the student. The
HeyReach list, the app DB rows and the student's login are kept: they are the student's data.
Nothing is bought or created. Every step reads the vendor first and changes only what is still
on, so a rerun or a retry from the Prefect UI is harmless. Deployment: ``cancel-provision/on-demand``,
started by the Stripe webhook (subscription deleted) or the admin page.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect import tags
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.objects import State
from prefect.flows import Flow
from prefect.runtime import flow_run

from tasks import runtime
from tasks.cancellation import confirm_cancelled
from tasks.cancellation import finish_cancellation
from tasks.cancellation import pause_warmup
from tasks.cancellation import schedule_mailbox_removal
from tasks.cancellation import stop_domain_renewal
from tasks.cancellation import stop_live_runs
from tasks.notifications import deliver_notifications
from tasks.notifications import deliver_quietly
from tasks.notifications import queue_for_admins
from tasks.summaries import student_email


def run_name() -> str:
    """Name the run after the student, so operators find it in the Prefect UI."""
    provision_id = flow_run.parameters.get("provision_id")
    return f"cancel-{provision_id}-{student_email(provision_id)}"


def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """Tell every admin that releasing a cancelled order's resources stopped (retry is safe)."""
    provision_id = flow_run.parameters.get("provision_id")
    if provision_id is None:
        return
    with runtime.db() as session:
        keys = queue_for_admins(
            session,
            key=f"cancel-failed:{provision_id}:{flow_run.id}",
            subject=f"[outbound] Cancelling provision {provision_id} did not finish",
            body=f"Run {flow_run.name} {state.type.value.lower()}: {state.message}\n"
            "Some vendor resources may still be on. Retrying the run from the Prefect UI is safe.",
        )
    deliver_quietly(keys)


@flow(
    name="cancel-provision",
    flow_run_name=run_name,
    persist_result=True,
    result_serializer="json",
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
)
def cancel_provision(provision_id: int) -> dict[str, Any]:
    """Switch off everything a cancelled order still runs at the vendors; keep its data."""
    with tags("cancellation", f"provision-{provision_id}"):
        student = confirm_cancelled(provision_id)
        stopped = stop_live_runs(provision_id)
        outcome = {
            "stopped_runs": stopped,
            "warmup_paused": pause_warmup(provision_id),
            "mailboxes_scheduled_for_removal": schedule_mailbox_removal(provision_id),
            "domains_renewal_stopped": stop_domain_renewal(provision_id),
        }
        keys = finish_cancellation(provision_id, outcome)
        create_markdown_artifact(
            key=f"cancel-provision-{provision_id}",
            markdown=_summary_markdown(provision_id, student, outcome),
            description=f"Provision {provision_id}: what the cancellation switched off",
        )
        deliver_notifications(keys)
    return {"provision_id": provision_id, "status": "cancelled", **outcome}


def _summary_markdown(provision_id: int, student: str, outcome: dict[str, Any]) -> str:
    runs = ", ".join(f"`{r}`" for r in outcome["stopped_runs"]) or "none live"
    return "\n".join(
        [
            f"# Cancellation of provision {provision_id}: {student}",
            "",
            "Counts are what this run changed; anything already off was left alone.",
            "",
            "| what | result |",
            "|---|---|",
            f"| provisioning / upgrade runs stopped | {runs} |",
            f"| PlusVibe accounts: warmup switched off | {outcome['warmup_paused']} |",
            "| Zapmail mailboxes scheduled for removal at renewal | "
            f"{outcome['mailboxes_scheduled_for_removal']} |",
            f"| Zapmail domains: auto-renew switched off | {outcome['domains_renewal_stopped']} |",
            "| HeyReach lead list | kept (student data) |",
            "| student login and dashboard | kept, read-only |",
        ]
    )


if __name__ == "__main__":
    import sys

    cancel_provision(int(sys.argv[1]))
