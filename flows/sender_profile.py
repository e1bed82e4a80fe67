"""Apply a student's sender profile (names and picture) to every mailbox of their provision.

Parameters are the provision id and the profile's revision. The dashboard's profile page writes
the request and an outbox start in one transaction; this run puts the names and the picture URL
on each mailbox at Zapmail (``PUT /v2/mailboxes``, usernames unchanged) and marks the revision
applied. A run for a revision that a newer request replaced does nothing. Safe to retry from the
Prefect UI: a finished update comes back from the business-keyed cache, an unfinished one is
sent only to the mailboxes still without it. Deployment: ``sender-profile/on-demand``.
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

from tasks.sender_profile import apply_sender_profile
from tasks.sender_profile import failure_reason
from tasks.sender_profile import load_profile
from tasks.sender_profile import mark_failed


def run_name() -> str:
    """Name the run after the provision and revision, so operators find it in the Prefect UI."""
    params = flow_run.parameters
    return f"sender-profile-{params.get('provision_id')}-r{params.get('revision')}"


def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """Show the student why the change stopped (saving the form again starts a new run)."""
    provision_id = flow_run.parameters.get("provision_id")
    revision = flow_run.parameters.get("revision")
    if provision_id is None or revision is None:
        return
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # a crashed run may have no result to read; the generic words then
        exc = None
    mark_failed(
        int(provision_id),
        int(revision),
        failure_reason(exc if isinstance(exc, Exception) else None),
    )


@flow(
    name="sender-profile",
    flow_run_name=run_name,
    persist_result=True,
    result_serializer="json",
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
)
def sender_profile(provision_id: int, revision: int) -> dict[str, Any]:
    """Put the requested names and picture on every mailbox of the provision."""
    with tags("sender-profile", f"provision-{provision_id}"):
        wanted = load_profile(provision_id, revision)
        if wanted is None:
            return {"provision_id": provision_id, "revision": revision, "status": "superseded"}
        result = apply_sender_profile(
            provision_id,
            revision,
            wanted["first_name"],
            wanted["last_name"],
            wanted["picture_sha256"],
        )
        # Counts and ids only: names and the picture's URL stay out of artifacts.
        create_markdown_artifact(
            key=f"sender-profile-{provision_id}",
            markdown=f"# Sender profile of provision {provision_id}, revision {revision}\n\n"
            f"- outcome: {result['status']}\n- mailboxes: {result['mailboxes']}\n"
            f"- updated at Zapmail in this run: {result['updated']}\n"
            f"- new picture: {'yes' if wanted['picture_sha256'] else 'no'}",
            description=f"Provision {provision_id}: sender profile {result['status']}",
        )
    return {"provision_id": provision_id, "revision": revision, **result}


if __name__ == "__main__":
    import sys

    sender_profile(int(sys.argv[1]), int(sys.argv[2]))
