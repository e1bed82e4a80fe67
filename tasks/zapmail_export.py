"""Exporting a provision's mailboxes from Zapmail to the student's PlusVibe workspace.

Decided by the vendors' own records every time, never by a cached result: Zapmail allows 3
exports per mailbox per week, so a failed export must be redone and a lost answer must not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from prefect import task
from sqlalchemy import select

from clients.errors import BadRequestError
from clients.errors import NotFoundError
from clients.zapmail import ThirdPartyAccount
from core.crypto import SecretBox
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from tasks import attempts
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.locks import provision_lock
from tasks.policies import vendor_task_options
from tasks.zapmail_rows import provision_mailboxes as _provision_mailboxes
from tasks.zapmail_rows import workspace_id as _workspace_id

# Re-exporting a mailbox is capped (3 per week): only export what PlusVibe does not have yet.
EXPORT_APP = "PIPL"
# How often a lost export's accounts are looked for in PlusVibe (for up to export_settle_s).
EXPORT_POLL_S = 10.0


@task(name="export-to-plusvibe", **vendor_task_options(None))
def export_to_plusvibe(
    provision_id: int, addresses: list[str], step_key: str = "connect_plusvibe"
) -> str | None:
    """Register the student's PlusVibe login in Zapmail and export the mailboxes PlusVibe lacks.

    Decided by the vendors' own records every time, never by a cached result (Zapmail allows
    3 exports per mailbox per week): a mailbox PlusVibe lists is done; one with an export in
    flight at Zapmail (looked up by its id), or requested within ``export_settle_s`` with the
    answer lost, is waited for; one whose export failed, or never arrived, is exported again.
    The request time is recorded before the call and the export id after it.
    """
    guards.ensure_current(provision_id)
    # The step finishes when the accounts show up in PlusVibe (a wait in the flow).
    with (
        records.step(provision_id, step_key, completes=False) as details,
        provision_lock(provision_id),
    ):
        guards.ensure_current(provision_id)
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            assert provision is not None
            email, token = provision.plusvibe_client_email, provision.plusvibe_client_password_enc
            plusvibe_workspace = provision.plusvibe_workspace_id
            rows = {
                row.address: ExportRecord(
                    row.zapmail_mailbox_id, row.export_id, row.export_requested_at
                )
                for row in _provision_mailboxes(session, provision_id, addresses)
            }
        if not (email and token and plusvibe_workspace):
            raise RuntimeError("the PlusVibe client login must exist before exporting")
        client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
        account = _export_login(client, provision_id, step_key, email, token)
        details["third_party_account_id"] = account.id
        while True:
            present = {
                a.email.lower() for a in runtime.plusvibe().iter_accounts(plusvibe_workspace)
            }
            statuses: dict[str, str] = {}
            to_export = sorted(
                address
                for address, record in rows.items()
                if record.mailbox_id
                and address not in present
                and _needs_export(client, record, statuses)
            )
            # An export whose answer was lost (no id) and has not shown up yet: look again until
            # it arrives or export_settle_s has passed (then it is exported again), rather than
            # leave the run waiting for accounts that may never come.
            lost = [
                address
                for address, record in rows.items()
                if address not in present and record.export_id is None and record.requested_at
            ]
            if to_export or not lost:
                break
            time.sleep(min(EXPORT_POLL_S, runtime.settings().export_settle_s / 4))
        details["export_statuses"] = statuses
        details["exported"] = len(to_export)
        if not to_export:
            return None
        # Recorded before the call: if its answer is lost, a retry waits for the export
        # instead of spending another of the mailbox's weekly exports.
        _record_exports(provision_id, to_export, export_id=None)
        export_id = client.export_mailboxes(
            [rows[address].mailbox_id for address in to_export],
            app=EXPORT_APP,
            third_party_account_id=account.id,
        )
        _record_exports(provision_id, to_export, export_id=export_id, keep_time=True)
        details["export_id"] = export_id
        details["exported_at"] = utcnow().isoformat()
        return export_id


def _export_login(
    client: Any, provision_id: int, step_key: str, email: str, token: str
) -> ThirdPartyAccount:
    """The student's PlusVibe login as registered at Zapmail, registering it if need be.

    Looked up first only where it may be there already: an earlier attempt of this step, or an
    earlier export of the provision (an upgrade reuses the login). Otherwise it is registered,
    then listed once for its id (Zapmail's answer carries none).
    """
    if attempts.tried_before(provision_id, step_key) or _exported_before(provision_id):
        account = client.find_third_party_account(email, app=EXPORT_APP)
        if account is not None:
            return account
    password = SecretBox.from_settings(runtime.settings()).open(token)
    try:
        client.add_third_party_account(email, password, app=EXPORT_APP)
    except BadRequestError:
        # Refused (Zapmail checks the credentials at PlusVibe): a login registered before, by
        # the operator say, still serves; the export's own status then says whether it works.
        account = client.find_third_party_account(email, app=EXPORT_APP)
        if account is None:
            raise
        return account
    account = client.find_third_party_account(email, app=EXPORT_APP)
    if account is None:
        raise RuntimeError("Zapmail accepted the PlusVibe login but does not list it")
    return account


def _exported_before(provision_id: int) -> bool:
    """Whether any mailbox of the provision was ever exported (so its login is registered)."""
    with runtime.db() as session:
        return (
            session.scalar(
                select(Mailbox.id)
                .join(Domain)
                .where(
                    Domain.provision_id == provision_id,
                    Mailbox.export_requested_at.is_not(None),
                )
                .limit(1)
            )
            is not None
        )


@dataclass(frozen=True)
class ExportRecord:
    """What our rows know of a mailbox's last export: Zapmail's ids and when it was asked."""

    mailbox_id: str | None
    export_id: str | None
    requested_at: datetime | None


def _needs_export(client: Any, record: ExportRecord, statuses: dict[str, str]) -> bool:
    """Whether the mailbox must be exported (again), judged by Zapmail's record of the last one."""
    if record.export_id:
        if record.export_id not in statuses:
            try:
                status = client.get_export_status(record.export_id)
                if status.is_failed:
                    statuses[record.export_id] = "failed"
                elif status.is_completed:
                    statuses[record.export_id] = "completed"
                else:
                    statuses[record.export_id] = (status.status or "unknown").lower()
            except NotFoundError:
                statuses[record.export_id] = "unknown to zapmail"
        state = statuses[record.export_id]
        if state in ("failed", "unknown to zapmail"):
            return True
        if state != "completed":
            return False  # still in flight at Zapmail: wait for it
        # Completed at Zapmail, not (yet) listed by PlusVibe: give it the window to arrive.
    if record.requested_at is None:
        return True
    return utcnow() - record.requested_at > timedelta(seconds=runtime.settings().export_settle_s)


def _record_exports(
    provision_id: int, addresses: list[str], *, export_id: str | None, keep_time: bool = False
) -> None:
    """Store the export's id and request time on the mailbox rows."""
    now = utcnow()
    with runtime.db() as session:
        for row in _provision_mailboxes(session, provision_id, addresses):
            row.export_id = export_id
            if not keep_time or row.export_requested_at is None:
                row.export_requested_at = now
