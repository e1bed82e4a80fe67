"""Prefect tasks that call PlusVibe: workspace, client login, account sync, warmup settings.

The client login's one-time password is sealed (core/crypto) and stored in the same task that
receives it; tasks return only ids, so no password reaches Prefect's results, logs or artifacts.
"""

from __future__ import annotations

import secrets
from typing import Any

from prefect import task
from sqlalchemy import select

from clients.plusvibe import WarmupSettings
from core.crypto import SecretBox
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options

# Warmup defaults from the original design: start 2/day, +2/day up to 30/day, 30% replies,
# randomised by 20%, slow ramp-up, campaigns capped at 30/day with 5 minutes between sends.
WARMUP_DEFAULTS = WarmupSettings(
    initial_daily_limit=2,
    pace_increment=2,
    max_daily_limit=30,
    reply_rate_percent=30,
    randomize=True,
    randomize_percent=20,
    slow_rampup=True,
    daily_limit=30,
    interval_minutes=5,
)


def workspace_name(provision_id: int, email: str) -> str:
    """The PlusVibe workspace name of a provision (found again after a lost answer)."""
    return f"Outbound #{provision_id} ({email})"


@task(
    name="plusvibe-workspace",
    **vendor_task_options(business_key("plusvibe-workspace", "provision_id")),
)
def ensure_plusvibe_workspace(provision_id: int, step_key: str = "plusvibe_workspace") -> str:
    """Find or create the student's PlusVibe workspace and client login; return the workspace id."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            assert provision is not None
            email, name = provision.user.email, provision.user.name or provision.user.email
            workspace_id = provision.plusvibe_workspace_id
            has_login = bool(
                provision.plusvibe_client_id and provision.plusvibe_client_password_enc
            )
        client = runtime.plusvibe()
        if not workspace_id:
            title = workspace_name(provision_id, email)
            workspace = client.find_workspace_by_name(title) or client.create_workspace(title)
            workspace_id = workspace.id
            with runtime.db() as session:
                session.get(Provision, provision_id).plusvibe_workspace_id = workspace_id  # type: ignore[union-attr]
        details["workspace_id"] = workspace_id
        if not has_login:
            details["client_id"] = _ensure_client_login(provision_id, workspace_id, email, name)
        return workspace_id


def _ensure_client_login(provision_id: int, workspace_id: str, email: str, name: str) -> str:
    client = runtime.plusvibe()
    box = SecretBox.from_settings(runtime.settings())
    existing = client.find_client_by_email(email)
    if existing is not None:
        # Created by an attempt whose answer (and one-time password) was lost: set a new one.
        password = secrets.token_urlsafe(18)
        client.set_client_password(existing.id, password)
        client_id, sealed = existing.id, box.seal(password)
    else:
        first, _, last = name.partition(" ")
        login = client.create_client(
            email=email,
            first_name=first or "Student",
            last_name=last or "Account",
            business_name=name,
            workspace_ids=[workspace_id],
        )
        if login.password is None:
            raise RuntimeError("PlusVibe created the client login without returning its password")
        client_id, sealed = login.client_id, box.seal(login.password)
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        assert provision is not None
        provision.plusvibe_client_id = client_id
        provision.plusvibe_client_email = email
        provision.plusvibe_client_password_enc = sealed
    return client_id


@task(name="check-plusvibe-accounts", **vendor_task_options(None))
def check_accounts_connected(provision_id: int, addresses: list[str]) -> bool:
    """Record which mailboxes PlusVibe already lists (one listing); say whether all are there."""
    with runtime.db() as session:
        workspace_id = session.get(Provision, provision_id).plusvibe_workspace_id  # type: ignore[union-attr]
    accounts = {a.email.lower(): a for a in runtime.plusvibe().iter_accounts(workspace_id)}
    with runtime.db() as session:
        rows = _mailboxes(session, provision_id, addresses)
        for row in rows:
            account = accounts.get(row.address)
            if account is not None:
                row.plusvibe_account_id = account.id
                row.warmup_enabled = account.warmup_active
        return all(row.plusvibe_account_id for row in rows)


@task(
    name="configure-warmup",
    **vendor_task_options(business_key("warmup", "provision_id", "addresses")),
)
def configure_warmup(provision_id: int, addresses: list[str], step_key: str = "warmup") -> int:
    """Apply the warmup settings and switch warmup on for the mailboxes (safe to repeat)."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details:
        with runtime.db() as session:
            workspace_id = session.get(Provision, provision_id).plusvibe_workspace_id  # type: ignore[union-attr]
            ids = [row.plusvibe_account_id for row in _mailboxes(session, provision_id, addresses)]
        if not workspace_id or not all(ids):
            raise RuntimeError("mailboxes must be connected to PlusVibe before warmup")
        account_ids = [i for i in ids if i]
        client = runtime.plusvibe()
        # Checked again just before switching warmup on, under the provision's lock that the
        # release run's warmup step also takes: a cancellation landing after this check
        # pauses warmup after the switch, never before it (a cancellation is never undone).
        with provision_lock(provision_id):
            guards.ensure_current(provision_id)
            client.bulk_update_accounts(workspace_id, account_ids, WARMUP_DEFAULTS)
            client.set_warmup_status(workspace_id, account_ids, True)
            with runtime.db() as session:
                for row in _mailboxes(session, provision_id, addresses):
                    row.warmup_enabled = True
        details["accounts"] = len(account_ids)
        return len(account_ids)


@task(name="pause-warmup", **vendor_task_options(None))
def pause_warmup(provision_id: int) -> int:
    """Switch warmup off for every mailbox of the provision (cancellation)."""
    with runtime.db() as session:
        workspace_id = session.get(Provision, provision_id).plusvibe_workspace_id  # type: ignore[union-attr]
        ids = [row.plusvibe_account_id for row in _mailboxes(session, provision_id, None)]
    account_ids = [i for i in ids if i]
    if workspace_id and account_ids:
        runtime.plusvibe().set_warmup_status(workspace_id, account_ids, False)
        with runtime.db() as session:
            for row in _mailboxes(session, provision_id, None):
                row.warmup_enabled = False
    return len(account_ids)


def _mailboxes(session: Any, provision_id: int, addresses: list[str] | None) -> list[Mailbox]:
    query = select(Mailbox).join(Domain).where(Domain.provision_id == provision_id)
    if addresses is not None:
        query = query.where(Mailbox.address.in_(addresses))
    return list(session.scalars(query.order_by(Mailbox.id)))
