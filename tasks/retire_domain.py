"""Retiring a replaced domain: its mailboxes stop sending and it stops costing at renewal.

For the old domain of a replacement only, once its successor warms up: warmup paused at
PlusVibe for its mailboxes, its mailboxes scheduled for removal at Zapmail's next renewal, its
auto-renew off, then ``Domain.retired_at``. Each action reads the vendor first and changes only
what is still on (tasks/switch_off.py, shared with cancellation), so a retry after a lost answer,
or a rerun, changes nothing more. Nothing is deleted at once: the period already paid runs out.
"""

from __future__ import annotations

from collections.abc import Collection
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


@task(
    name="retire-domain",
    **vendor_task_options(business_key("retire-domain", "replacement_id")),
)
def retire_domain(replacement_id: int, step_key: str) -> dict[str, Any]:
    """Stop the replaced domain's sending and renewal, schedule its mailboxes' removal; the counts."""
    provision_id = guards.ensure_replacement_current(replacement_id)
    # Under the provision's lock, like every vendor change of the order (cancellation included).
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        guards.ensure_replacement_current(replacement_id)
        with runtime.db() as session:
            replacement = session.get(DomainReplacement, replacement_id)
            assert replacement is not None
            old, provision = replacement.old_domain, replacement.provision
            domain_id, name = old.id, old.name
            addresses = {m.address for m in old.mailboxes}
            plusvibe_ws = provision.plusvibe_workspace_id
            zapmail_ws = provision.zapmail_workspace_id
        # Sending stops first: it is what hurts the student's reputation while the rest settles.
        paused = pause_warming(plusvibe_ws, addresses) if plusvibe_ws and addresses else 0
        _mirror(domain_id, warmup_enabled=False)
        scheduled: list[str] = []
        stopped = 0
        if zapmail_ws:
            scheduled, remote = schedule_removals(zapmail_ws, name)
            _mirror(domain_id, removal_scheduled=set(remote))
            stopped, _names = stop_renewals(zapmail_ws, name)
        with runtime.db() as session:
            session.execute(
                update(Domain)
                .where(Domain.id == domain_id)
                .values(auto_renew=False, retired_at=func.coalesce(Domain.retired_at, utcnow()))
                .execution_options(synchronize_session=False)
            )
        outcome = {
            "domain": name,
            "warmup_paused": paused,
            "mailboxes_scheduled_for_removal": len(scheduled),
            "renewal_stopped": stopped,
        }
        details.update(outcome)
        return outcome


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
