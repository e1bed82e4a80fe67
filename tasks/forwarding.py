"""Website forwarding at Zapmail: a provision's cold domains send visitors to the student's site.

``Provision.forward_to`` is what the student wants; the ``forwardTo`` of Zapmail's domain rows
is what is in force. The provisioning step and the dashboard's on-demand run both reconcile the
two under the provision's lock: list the workspace once, set forwarding in one call for the
domains that differ, remove it (one call per domain, the documented body) where no website is
wanted. Looking first makes a retry after a lost answer change nothing; the provisioning step's
first attempt, on domains just bought, has nothing to look at and sets them all in one call.
Without a website the provisioning step makes no call at all. ``Domain.forwarded_to`` mirrors
what Zapmail holds.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlalchemy import select

from core.forwarding import website_or_none
from core.models import Domain
from core.models import Provision
from core.models import PurchaseState
from tasks import attempts
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options
from tasks.zapmail import ACTIVE

Result = dict[str, Any]


@task(
    name="set-forwarding",
    **vendor_task_options(business_key("forwarding", "provision_id", "domains")),
)
def set_forwarding(provision_id: int, domains: list[str], step_key: str = "forwarding") -> Result:
    """Provisioning step: forward the (new) domains to the student's website; no call without one."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        guards.ensure_current(provision_id)
        target = wanted_target(provision_id)
        details["forward_to"] = target
        if target is None:
            details["skipped"] = "no website given"
            return {"forward_to": None, "set": [], "removed": []}
        # A first attempt comes right after the domains' wait: they are new and forward nowhere,
        # so there is nothing to look at; a later attempt may follow a lost answer, and looks.
        result = reconcile(
            provision_id, domains, target, look=attempts.tried_before(provision_id, step_key)
        )
        details.update(result)
        return result


@task(
    name="apply-forwarding",
    **vendor_task_options(business_key("apply-forwarding", "provision_id", "request")),
)
def apply_forwarding(provision_id: int, request: str) -> Result:  # noqa: ARG001 - cache key
    """On demand: make every live domain of the provision forward where the student wants now.

    ``request`` names the change (its outbox key): a retry of the same run replays it from the
    cache, a later change is a new request and reads the provision again.
    """
    guards.ensure_current(provision_id)
    with provision_lock(provision_id):
        guards.ensure_current(provision_id)
        with runtime.db() as session:
            names = list(
                session.scalars(
                    select(Domain.name).where(
                        Domain.provision_id == provision_id,
                        Domain.purchase_state == PurchaseState.PURCHASED.value,
                        # A retired domain lapses at renewal: not worth a forwarding call.
                        Domain.retired_at.is_(None),
                    )
                )
            )
        return reconcile(provision_id, names, wanted_target(provision_id))


def wanted_target(provision_id: int) -> str | None:
    """The provision's website if it is still a valid target (never one of its own domains)."""
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None:
            raise guards.StaleRunError(f"provision {provision_id} does not exist")
        names = [d.name for d in provision.domains]
        return website_or_none(provision.forward_to, names)


def reconcile(
    provision_id: int, names: list[str], target: str | None, *, look: bool = True
) -> Result:
    """Make Zapmail forward the named live domains to ``target`` (``None``: forward nowhere).

    ``look=False`` (a first attempt on domains just bought) trusts the app DB instead of a
    listing: the live domains are those the domains' wait saw ACTIVE, forwarding nowhere yet.
    """
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        workspace = provision.zapmail_workspace_id if provision else None
        rows = [
            row
            for row in session.scalars(
                select(Domain).where(Domain.provision_id == provision_id, Domain.name.in_(names))
            )
            if row.zapmail_domain_id
        ]
        ours = {row.zapmail_domain_id: row.name for row in rows}
        active = [row.zapmail_domain_id for row in rows if (row.status or "").upper() == ACTIVE]
    if not workspace or not ours:
        return {"forward_to": target, "set": [], "removed": []}
    client = runtime.zapmail().for_workspace(workspace)
    remote: dict[str, str | None]
    if look:
        remote = {
            d.id: website_or_none(d.forward_to, ())
            for d in client.iter_domains()
            if d.id in ours and (d.status or "").upper() == ACTIVE
        }
    else:
        remote = dict.fromkeys(active)
    if target is not None:
        to_set = sorted(zid for zid, now in remote.items() if now != target)
        if to_set:
            client.set_forwarding(to_set, target)
        to_remove: list[str] = []
    else:
        to_set = []
        to_remove = sorted(zid for zid, now in remote.items() if now is not None)
        for zid in to_remove:
            client.remove_forwarding(zid)
    with runtime.db() as session:
        for row in session.scalars(
            select(Domain).where(Domain.zapmail_domain_id.in_(list(remote)))
        ):
            row.forwarded_to = target
    return {
        "forward_to": target,
        "set": sorted(ours[zid] for zid in to_set),
        "removed": sorted(ours[zid] for zid in to_remove),
    }
