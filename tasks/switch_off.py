"""Switching things off at the vendors, for a whole workspace or for one domain.

Shared by cancellation (every mailbox and domain of the order) and a burned domain's retirement
(that domain only). Each function reads the vendor first and changes only what is still on, so a
rerun, or a retry after an answer was lost, changes nothing more. None buys or creates anything.
"""

from __future__ import annotations

from typing import Any

from tasks import runtime


def pause_warming(workspace_id: str, addresses: set[str] | None = None) -> int:
    """Switch warmup off for the PlusVibe accounts still warming (of ``addresses`` if given)."""
    client = runtime.plusvibe()
    warming = [
        a
        for a in client.iter_accounts(workspace_id)
        if a.warmup_active and (addresses is None or a.email.lower() in addresses)
    ]
    if warming:
        client.set_warmup_status(workspace_id, [a.id for a in warming], False)
    return len(warming)


def schedule_removals(
    workspace_id: str, domain: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """Schedule the mailboxes not scheduled yet (of ``domain`` if given) for removal at renewal.

    Returns (the addresses scheduled now, address -> Zapmail id of every mailbox listed).
    """
    client = runtime.zapmail().for_workspace(workspace_id)
    listed = list(client.iter_mailboxes(domain=domain))
    remote = {(m.address or "").lower(): m.id for m in listed}
    # Zapmail's own flag is the truth, never our rows: a run that failed halfway, or an
    # answer recorded without its effect, must not make a later run skip a mailbox.
    todo = sorted((m.address or "").lower() for m in listed if not scheduled_at_vendor(m))
    # Removal at the renewal, never at once: the student keeps what the period paid for.
    if todo:
        client.schedule_mailbox_removal([remote[address] for address in todo])
    return todo, remote


def stop_renewals(workspace_id: str, name: str | None = None) -> tuple[int, set[str]]:
    """Turn auto-renew off where it is still on (only domain ``name`` if given).

    Returns (how many were turned off, the names of every domain listed).
    """
    client = runtime.zapmail().for_workspace(workspace_id)
    # Zapmail's substring filter narrows the listing; the exact name is matched here.
    domains = [
        d
        for d in client.iter_domains(contains=name, page_size=100)
        if name is None or d.domain.lower() == name
    ]
    # Unknown (None) counts as on: turning off what is already off costs nothing.
    renewing = [d for d in domains if d.auto_renew is not False]
    if renewing:
        client.set_auto_renew([d.id for d in renewing], False)
    return len(renewing), {d.domain.lower() for d in domains}


def scheduled_at_vendor(mailbox: Any) -> bool:
    """Whether Zapmail's listing says the mailbox is already scheduled for removal."""
    # Not a typed field of the client's model: read from the listing's own key when present.
    extra = mailbox.model_extra or {}
    return extra.get("scheduledForRemoval") is True
