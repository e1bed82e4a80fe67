"""Retiring a replaced domain: its mailboxes stop sending and it stops costing at renewal.

For the old domain of a replacement only, once its successor warms up: warmup paused at
PlusVibe for its mailboxes, its mailboxes scheduled for removal at Zapmail's next renewal, its
auto-renew off, then ``Domain.retired_at``. Each action reads the vendor first and changes only
what is still on (tasks/switch_off.py, shared with cancellation), so a retry after a lost answer,
or a rerun, changes nothing more. Nothing is deleted at once: the period already paid runs out.

One mirror step (``retire_domain``) over three tasks with their own retries and business-keyed
caches: a vendor blip at one action is retried there, and a retry of the run redoes only the
actions that had not finished.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from prefect import task
from sqlalchemy import func
from sqlalchemy import update

from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options
from tasks.switch_off import pause_warming
from tasks.switch_off import schedule_removals
from tasks.switch_off import stop_renewals


@dataclass(frozen=True)
class OldDomain:
    """What the retirement needs to know of the replaced domain and its order."""

    provision_id: int
    domain_id: int
    name: str
    addresses: frozenset[str]
    plusvibe_workspace: str | None
    zapmail_workspace: str | None


def _old_domain(replacement_id: int) -> OldDomain:
    """Read the old domain; fenced (StaleRunError) if the replacement or order moved on."""
    guards.ensure_replacement_current(replacement_id)
    with runtime.db() as session:
        replacement = session.get(DomainReplacement, replacement_id)
        assert replacement is not None
        old, provision = replacement.old_domain, replacement.provision
        return OldDomain(
            provision_id=provision.id,
            domain_id=old.id,
            name=old.name,
            addresses=frozenset(m.address for m in old.mailboxes),
            plusvibe_workspace=provision.plusvibe_workspace_id,
            zapmail_workspace=provision.zapmail_workspace_id,
        )


@task(
    name="retire-domain",
    **vendor_task_options(business_key("retire-domain", "replacement_id"), retries=0),
)
def retire_domain(replacement_id: int, step_key: str) -> dict[str, Any]:
    """Stop the replaced domain's sending and renewal, schedule its mailboxes' removal; the counts."""
    old = _old_domain(replacement_id)
    with records.step(old.provision_id, step_key) as details:
        # Sending stops first: it is what hurts the student's reputation while the rest settles.
        outcome = {
            "domain": old.name,
            "warmup_paused": pause_old_warmup(replacement_id),
            "mailboxes_scheduled_for_removal": schedule_old_removal(replacement_id),
            "renewal_stopped": stop_old_renewal(replacement_id),
        }
        details.update(outcome)
        return outcome


@task(
    name="retire-pause-warmup",
    **vendor_task_options(business_key("retire-pause-warmup", "replacement_id")),
)
def pause_old_warmup(replacement_id: int) -> int:
    """Switch warmup off at PlusVibe for the old domain's mailboxes still warming."""
    old = _old_domain(replacement_id)
    with provision_lock(old.provision_id):
        # Again under the lock, which the cancellation's steps take too.
        guards.ensure_replacement_current(replacement_id)
        paused = 0
        if old.plusvibe_workspace and old.addresses:
            paused = pause_warming(old.plusvibe_workspace, set(old.addresses))
        _mirror(old.domain_id, warmup_enabled=False)
        return paused


@task(
    name="retire-schedule-removal",
    **vendor_task_options(business_key("retire-schedule-removal", "replacement_id")),
)
def schedule_old_removal(replacement_id: int) -> int:
    """Schedule the old domain's mailboxes for removal at Zapmail's next renewal."""
    old = _old_domain(replacement_id)
    with provision_lock(old.provision_id):
        guards.ensure_replacement_current(replacement_id)
        if not old.zapmail_workspace:
            return 0
        scheduled, remote = schedule_removals(old.zapmail_workspace, old.name)
        _mirror(old.domain_id, removal_scheduled=set(remote))
        return len(scheduled)


@task(
    name="retire-stop-renewal",
    **vendor_task_options(business_key("retire-stop-renewal", "replacement_id")),
)
def stop_old_renewal(replacement_id: int) -> int:
    """Turn the old domain's auto-renew off, then mark it retired."""
    old = _old_domain(replacement_id)
    with provision_lock(old.provision_id):
        guards.ensure_replacement_current(replacement_id)
        stopped = 0
        if old.zapmail_workspace:
            stopped, _names = stop_renewals(old.zapmail_workspace, old.name)
        with runtime.db() as session:
            session.execute(
                update(Domain)
                .where(Domain.id == old.domain_id)
                .values(auto_renew=False, retired_at=func.coalesce(Domain.retired_at, utcnow()))
                .execution_options(synchronize_session=False)
            )
        return stopped


def _mirror(
    domain_id: int, *, warmup_enabled: bool | None = None, removal_scheduled: Collection[str] = ()
) -> None:
    """Write what the vendors now say onto the old domain's mailbox rows."""
    now = utcnow()
    with runtime.db() as session:
        domain = session.get(Domain, domain_id)
        assert domain is not None
        for row in domain.mailboxes:
            if warmup_enabled is not None:
                row.warmup_enabled = warmup_enabled
            if row.address in removal_scheduled:
                row.removal_scheduled_at = row.removal_scheduled_at or now
