"""Sender-profile tasks: put a requested profile's names and picture on every mailbox, once.

Under the provision's lock the apply task lists the workspace's mailboxes and sends one
``PUT /v2/mailboxes`` for those that do not show the profile yet, each with its own username
(never a new one: that would be a new address with its warmup reset). An answer that proves
nothing (5xx, a timeout, a body it cannot read) is settled by listing again, so a retry sends
only to mailboxes still without the change. The task is cached on the request's business key
(provision, revision, names, picture hash): a finished update is never sent again.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlalchemy import select
from sqlalchemy import update

from clients.errors import AuthenticationError
from clients.errors import BadRequestError
from clients.errors import NotFoundError
from clients.errors import VendorError
from clients.zapmail.models import MailboxUpdate
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import SenderProfile
from core.models import SenderProfileStatus
from core.sender_profile import picture_url
from core.sender_profile import step_key
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.errors import PipelineError
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options

# Answers in which Zapmail says it did nothing: repeating the same body cannot help.
REFUSALS = (BadRequestError, AuthenticationError, NotFoundError)
SUPERSEDED = {"status": "superseded", "mailboxes": 0, "updated": 0}


class ProfileNotAppliedError(PipelineError):
    """Zapmail's answer was unclear and a listing shows mailboxes still without the profile."""

    retryable = True
    student_message = "Zapmail did not confirm the change yet; we try again."


@task(name="load-sender-profile", **vendor_task_options(None))
def load_profile(provision_id: int, revision: int) -> dict[str, str] | None:
    """The names and picture hash of this revision, or None when a newer one replaced it."""
    with runtime.db() as session:
        row = session.scalar(
            select(SenderProfile).where(SenderProfile.provision_id == provision_id)
        )
        if row is None or row.revision != revision:
            return None
        return {
            "first_name": row.first_name,
            "last_name": row.last_name,
            "picture_sha256": row.picture_sha256 or "",
        }


def _target(provision_id: int, revision: int) -> tuple[str, str | None, list[str]] | None:
    """(workspace id, picture token, mailbox addresses) of a still-current request, else None."""
    with runtime.db() as session:
        row = session.scalar(
            select(SenderProfile).where(SenderProfile.provision_id == provision_id)
        )
        if row is None or row.revision != revision:
            return None
        provision = session.get(Provision, provision_id)
        if provision is None or not provision.zapmail_workspace_id:
            raise RuntimeError(f"provision {provision_id} has no Zapmail workspace")
        # A retired domain's mailboxes no longer send and are removed at renewal: left alone.
        addresses = session.scalars(
            select(Mailbox.address)
            .join(Domain)
            .where(Domain.provision_id == provision_id, Domain.retired_at.is_(None))
        ).all()
        return provision.zapmail_workspace_id, row.picture_token, sorted(addresses)


def _missing(client: Any, addresses: list[str], wanted: dict[str, Any]) -> list[Any]:
    """The provision's mailboxes at Zapmail that do not show the wanted names or picture yet."""
    ours = set(addresses)
    return [
        box
        for box in client.iter_mailboxes()
        if (box.address or "").lower() in ours
        and (
            (box.first_name, box.last_name) != (wanted["first_name"], wanted["last_name"])
            or (wanted["picture"] is not None and box.profile_picture != wanted["picture"])
        )
    ]


def _finish(provision_id: int, revision: int, first_name: str, last_name: str) -> None:
    """Mirror the names on our mailbox rows and mark this revision applied (if still current)."""
    with runtime.db() as session:
        for box in session.scalars(
            select(Mailbox)
            .join(Domain)
            .where(Domain.provision_id == provision_id, Domain.retired_at.is_(None))
        ):
            box.first_name, box.last_name = first_name, last_name
        session.execute(
            update(SenderProfile)
            .where(SenderProfile.provision_id == provision_id, SenderProfile.revision == revision)
            .values(status=SenderProfileStatus.APPLIED.value, applied_at=utcnow(), error=None)
            .execution_options(synchronize_session=False)
        )


@task(
    name="apply-sender-profile",
    **vendor_task_options(
        business_key(
            "sender-profile",
            "provision_id",
            "revision",
            "first_name",
            "last_name",
            "picture_sha256",
        )
    ),
)
def apply_sender_profile(
    provision_id: int,
    revision: int,
    first_name: str,
    last_name: str,
    picture_sha256: str,  # noqa: ARG001 - part of the cache key: a new picture is a new update
) -> dict[str, Any]:
    """Put the names (and picture) on every mailbox still without them; return the counts."""
    guards.ensure_current(provision_id)
    records.prepare_steps(provision_id, [step_key(revision)])
    with records.step(provision_id, step_key(revision)) as details, provision_lock(provision_id):
        guards.ensure_current(provision_id)
        target = _target(provision_id, revision)
        if target is None:
            # A newer request came in: its own run applies it, after this one (same lock).
            details["superseded"] = True
            return dict(SUPERSEDED)
        workspace_id, token, addresses = target
        wanted = {
            "first_name": first_name,
            "last_name": last_name,
            "picture": picture_url(runtime.settings().public_url, token) if token else None,
        }
        client = runtime.zapmail().for_workspace(workspace_id)
        todo = _missing(client, addresses, wanted)
        if todo:
            updates = [
                MailboxUpdate(
                    mailbox_id=box.id,
                    first_name=first_name,
                    last_name=last_name,
                    username=box.username,
                    profile_picture=wanted["picture"],
                )
                for box in todo
            ]
            try:
                client.update_mailboxes(updates)
            except VendorError as exc:
                if isinstance(exc, REFUSALS):
                    raise
                # Performed or not? Zapmail's own listing says; only what is missing is resent.
                left = _missing(client, addresses, wanted)
                if left:
                    raise ProfileNotAppliedError(
                        f"{len(left)} of {len(todo)} mailboxes lack the profile after: {exc}"
                    ) from exc
        _finish(provision_id, revision, first_name, last_name)
        details.update(mailboxes=len(addresses), updated=len(todo))
        return {"status": "applied", "mailboxes": len(addresses), "updated": len(todo)}


def failure_reason(exc: BaseException | None) -> str:
    """What the student reads when a sender-profile run stopped (plain words, no internals)."""
    if isinstance(exc, guards.StaleRunError):
        return "Your order is cancelled, so the mailboxes were not changed."
    if isinstance(exc, REFUSALS):
        return f"Zapmail refused the change: {exc.message}"
    if isinstance(exc, VendorError | PipelineError):
        return "Zapmail did not answer after several tries. Nothing is lost; save again later."
    return "The change could not be applied; our team has been told. Save again later."


def mark_failed(provision_id: int, revision: int, reason: str) -> None:
    """Record that this revision's run stopped (only while it is the latest, still pending)."""
    with runtime.db() as session:
        session.execute(
            update(SenderProfile)
            .where(
                SenderProfile.provision_id == provision_id,
                SenderProfile.revision == revision,
                SenderProfile.status == SenderProfileStatus.PENDING.value,
            )
            .values(status=SenderProfileStatus.FAILED.value, error=reason[:2000])
            .execution_options(synchronize_session=False)
        )
