"""Prefect tasks that call Zapmail: workspace, domains, DMARC, mailboxes, export to PlusVibe.

Each task takes ids and plain names, mirrors its step, and is cached on business keys so a
rerun of the same provision skips it once it has succeeded; the export is the exception, decided
by the vendors' own records every time (a failed export must be redone, a lost answer not). Mutating calls run under the
provision's lock and look before they write, so a retry never repeats a purchase or a mailbox.
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
from clients.zapmail import MailboxSpec
from core.crypto import SecretBox
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from tasks import capacity
from tasks import guards
from tasks import purchase
from tasks import records
from tasks import runtime
from tasks.errors import ProvisioningBlockedError
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options

ACTIVE = "ACTIVE"
FAILED = "FAILED"
# Zapmail's 400 when the account's purchased mailbox slots are used up (vendors/zapmail.md 8.2).
NO_SLOTS = "not enough mailboxes"
# Re-exporting a mailbox is capped (3 per week): only export what PlusVibe does not have yet.
EXPORT_APP = "PIPL"
# How often a lost export's accounts are looked for in PlusVibe.
EXPORT_POLL_S = 10.0
# How long an export whose answer was lost (no id) may take to show up in PlusVibe before it
# is exported again; also the grace for a completed export to be listed there.


def workspace_name(provision_id: int) -> str:
    """The Zapmail workspace name of a provision (unique per account, found again after a crash)."""
    return f"outbound-provision-{provision_id}"


@task(
    name="zapmail-workspace",
    **vendor_task_options(business_key("zapmail-workspace", "provision_id")),
)
def ensure_zapmail_workspace(provision_id: int, step_key: str = "zapmail_workspace") -> str:
    """Find or create the provision's Zapmail workspace (with billing details); return its id."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        with runtime.db() as session:
            existing = session.get(Provision, provision_id).zapmail_workspace_id  # type: ignore[union-attr]
        if existing:
            return existing
        client = runtime.zapmail()
        name = workspace_name(provision_id)
        # Look up first: a previous attempt may have created it and lost the answer.
        workspace = client.find_workspace_by_name(name) or client.create_workspace(
            name, runtime.settings().zapmail_billing_details
        )
        with runtime.db() as session:
            session.get(Provision, provision_id).zapmail_workspace_id = workspace.id  # type: ignore[union-attr]
        details["workspace_id"] = workspace.id
        return workspace.id


@task(
    name="buy-domains",
    **vendor_task_options(business_key("buy-domains", "provision_id", "domains")),
)
def buy_domains(
    provision_id: int, domains: list[str], step_key: str = "buy_domains"
) -> dict[str, str]:
    """Buy the domains exactly once (see tasks/purchase.py); return name -> Zapmail domain id."""
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        return purchase.buy_domains(provision_id, domains, details)


@task(name="check-domains", **vendor_task_options(None))
def check_domains_active(provision_id: int, domains: list[str]) -> bool:
    """List the workspace once, record each domain's status, and say whether all are ACTIVE."""
    client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
    remote = {d.domain.lower(): d for d in client.iter_domains(page_size=100)}
    with runtime.db() as session:
        rows = _provision_domains(session, provision_id, domains)
        for row in rows:
            if row.name in remote:
                row.status = remote[row.name].status
                row.zapmail_domain_id = remote[row.name].id
        return all(row.status == ACTIVE for row in rows)


@task(name="set-dmarc", **vendor_task_options(business_key("dmarc", "provision_id", "domains")))
def set_dmarc(provision_id: int, domains: list[str], step_key: str = "dmarc") -> int:
    """Point the domains' DMARC aggregate reports at the operator's address (safe to repeat)."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details:
        email = runtime.settings().dmarc_report_email
        with runtime.db() as session:
            ids = [
                row.zapmail_domain_id for row in _provision_domains(session, provision_id, domains)
            ]
        client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
        client.set_dmarc([i for i in ids if i], email)
        with runtime.db() as session:
            for row in _provision_domains(session, provision_id, domains):
                row.dmarc_email = email
        details["dmarc_email"] = email
        return len(ids)


@task(
    name="create-mailboxes",
    **vendor_task_options(business_key("mailboxes", "provision_id", "addresses")),
)
def create_mailboxes(provision_id: int, addresses: list[str], step_key: str = "mailboxes") -> int:
    """Create the mailboxes that do not exist yet in the workspace; return how many were asked for."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        # Again under the lock: a cancellation may have landed while we waited for it.
        guards.ensure_current(provision_id)
        client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
        existing = {(m.email or "").lower() for m in client.iter_mailboxes()}
        with runtime.db() as session:
            missing = [
                row
                for row in _provision_mailboxes(session, provision_id, addresses)
                if row.address not in existing
            ]
            request: dict[str, list[MailboxSpec]] = {}
            for row in missing:
                domain_id = row.domain.zapmail_domain_id
                if not domain_id:
                    raise RuntimeError(f"{row.domain.name} has no Zapmail id; domains not active?")
                request.setdefault(domain_id, []).append(
                    MailboxSpec(
                        first_name=row.first_name,
                        last_name=row.last_name,
                        mailbox_username=row.username,
                        domain_name=row.domain.name,
                    )
                )
        if request:
            try:
                client.create_mailboxes(request)
            except BadRequestError as exc:
                if NO_SLOTS not in str(exc).lower():
                    raise
                raise _out_of_slots(client, len(missing), provision_id) from exc
        details["created"] = sorted(row.address for row in missing)
        return len(missing)


def _out_of_slots(client: Any, needed: int, provision_id: int) -> ProvisioningBlockedError:
    """The operator account has too few mailbox slots: say so plainly, to admins and student."""
    quota = client.get_mailbox_quota()
    # The operator hears of it now, with the numbers, not when a student asks.
    capacity.alert_capacity_stop(
        provision_id,
        free=quota.available_mailboxes,
        purchased=quota.purchased_mailboxes,
        needed=needed,
    )
    return ProvisioningBlockedError(
        f"Zapmail has {quota.available_mailboxes} free mailbox slots of "
        f"{quota.purchased_mailboxes}; this step needs {needed}. Buy add-on mailbox slots "
        "(wallet), then retry the run: it resumes at the mailboxes.",
        student_message=(
            "Your domains are ready. We are adding mailbox capacity at our provider before we "
            "create your mailboxes; nothing is lost and you do not need to do anything."
        ),
        remedy="capacity",
    )


@task(name="check-mailboxes", **vendor_task_options(None))
def check_mailboxes_active(provision_id: int, addresses: list[str]) -> bool:
    """List the workspace's mailboxes once, record their status, retry FAILED ones; all ACTIVE?"""
    client = runtime.zapmail().for_workspace(_workspace_id(provision_id))
    remote = {(m.email or "").lower(): m for m in client.iter_mailboxes()}
    failed_domains: set[str] = set()
    guards.ensure_current(provision_id)  # it may ask Zapmail to retry failed mailboxes
    with runtime.db() as session:
        rows = _provision_mailboxes(session, provision_id, addresses)
        for row in rows:
            box = remote.get(row.address)
            if box is None:
                continue
            row.status = box.status
            row.zapmail_mailbox_id = box.id
            if box.status == FAILED and row.domain.zapmail_domain_id:
                failed_domains.add(row.domain.zapmail_domain_id)
        all_active = all(row.status == ACTIVE for row in rows)
    if failed_domains:
        # Zapmail's own remedy for a failed mailbox; the next check sees them IN_PROGRESS again.
        client.retry_failed_mailboxes(sorted(failed_domains))
    return all_active


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
        account = client.find_third_party_account(email, app=EXPORT_APP)
        if account is None:
            password = SecretBox.from_settings(runtime.settings()).open(token)
            client.add_third_party_account(email, password, app=EXPORT_APP)
            account = client.find_third_party_account(email, app=EXPORT_APP)
            if account is None:
                raise RuntimeError("Zapmail accepted the PlusVibe login but does not list it")
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


@task(name="disable-auto-renew", **vendor_task_options(None))
def disable_auto_renew(provision_id: int) -> int:
    """Turn auto-renew off on every domain of the provision (cancellation)."""
    with runtime.db() as session:
        ids = [
            row.zapmail_domain_id
            for row in session.scalars(select(Domain).where(Domain.provision_id == provision_id))
            if row.zapmail_domain_id
        ]
    if ids:
        runtime.zapmail().for_workspace(_workspace_id(provision_id)).set_auto_renew(ids, False)
        with runtime.db() as session:
            for row in session.scalars(select(Domain).where(Domain.provision_id == provision_id)):
                row.auto_renew = False
    return len(ids)


def _workspace_id(provision_id: int) -> str:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None or not provision.zapmail_workspace_id:
            raise ProvisioningBlockedError(
                f"provision {provision_id} has no Zapmail workspace",
                student_message="Your domain workspace is missing; our team has been alerted.",
                remedy="support",
            )
        return provision.zapmail_workspace_id


def _provision_domains(session: Any, provision_id: int, names: list[str]) -> list[Domain]:
    return list(
        session.scalars(
            select(Domain).where(Domain.provision_id == provision_id, Domain.name.in_(names))
        )
    )


def _provision_mailboxes(session: Any, provision_id: int, addresses: list[str]) -> list[Mailbox]:
    return list(
        session.scalars(
            select(Mailbox)
            .join(Domain)
            .where(Domain.provision_id == provision_id, Mailbox.address.in_(addresses))
        )
    )
