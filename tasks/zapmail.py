"""Prefect tasks that call Zapmail: workspace, domains, DMARC, mailboxes, export to PlusVibe.

Each task takes ids and plain names, mirrors its step, and is cached on business keys so a
rerun of the same provision skips it once it has succeeded; the export (tasks/zapmail_export.py)
is the exception, decided by the vendors' own records every time. Mutating calls run under the
provision's lock; where an earlier attempt may have written (tasks/attempts.py) they look
before they write, so a retry never repeats a workspace or a mailbox. Purchases keep their own
ledger (tasks/purchase.py).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlalchemy import select

from clients.errors import BadRequestError
from clients.errors import ConflictError
from clients.zapmail import MailboxSpec
from core.models import Domain
from core.models import Provision
from tasks import attempts
from tasks import capacity
from tasks import guards
from tasks import purchase
from tasks import records
from tasks import runtime
from tasks.errors import ProvisioningBlockedError
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options
from tasks.zapmail_export import EXPORT_APP as EXPORT_APP
from tasks.zapmail_export import export_to_plusvibe as export_to_plusvibe
from tasks.zapmail_rows import provision_domains as _provision_domains
from tasks.zapmail_rows import provision_mailboxes as _provision_mailboxes
from tasks.zapmail_rows import workspace_id as _workspace_id

ACTIVE = "ACTIVE"
FAILED = "FAILED"
# Zapmail's 400 when the account's purchased mailbox slots are used up (vendors/zapmail.md 8.2).
NO_SLOTS = "not enough mailboxes"


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
        # Again under the lock: of two attempts racing here only the current run goes on.
        guards.ensure_current(provision_id)
        with runtime.db() as session:
            existing = session.get(Provision, provision_id).zapmail_workspace_id  # type: ignore[union-attr]
        if existing:
            return existing
        client = runtime.zapmail()
        name = workspace_name(provision_id)
        workspace = None
        if attempts.tried_before(provision_id, step_key):
            # An earlier attempt may have created it and lost the answer.
            workspace = client.find_workspace_by_name(name)
        if workspace is None:
            workspace = _create_workspace(client, name)
        with runtime.db() as session:
            session.get(Provision, provision_id).zapmail_workspace_id = workspace.id  # type: ignore[union-attr]
        details["workspace_id"] = workspace.id
        return workspace.id


def _create_workspace(client: Any, name: str) -> Any:
    """Create the workspace; a refusal because the name exists finds the one created before."""
    try:
        return client.create_workspace(name, runtime.settings().zapmail_billing_details)
    except (BadRequestError, ConflictError):
        # Names are unique per account: refused because an earlier attempt created it.
        found = client.find_workspace_by_name(name)
        if found is None:
            raise
        return found


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
        existing: set[str] = set()
        if attempts.tried_before(provision_id, step_key):
            # An earlier attempt may have created them and lost the answer: never twice.
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
