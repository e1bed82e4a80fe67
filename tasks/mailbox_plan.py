"""Mailbox planning: which domains a run covers and the mailbox rows it must create on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from core.mailboxes import MailboxNameError
from core.mailboxes import usernames_for
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import PurchaseState
from core.models import ReplacementStatus
from core.models import UpgradeStatus
from tasks.errors import ProvisioningBlockedError


def tier_domains(provision: Provision) -> list[Domain]:
    """The domains the provision's current tier covers: its own and those of completed upgrades.

    A domain retired by a replacement no longer counts; its successor counts once the
    replacement completed (until then it belongs to the replacement's run).
    """
    # An unpaid, running or failed upgrade's domains belong to that upgrade's run, not to this one.
    completed = {u.id for u in provision.upgrades if u.status == UpgradeStatus.COMPLETED}
    session = object_session(provision)
    successors = set(
        session.scalars(
            select(DomainReplacement.new_domain_id).where(
                DomainReplacement.provision_id == provision.id,
                DomainReplacement.status != ReplacementStatus.COMPLETED.value,
            )
        )
        if session is not None
        else ()
    )
    return [
        d
        for d in provision.domains
        if d.purchase_state != PurchaseState.ABANDONED
        and d.retired_at is None
        and d.id not in successors
        and (d.upgrade_id is None or d.upgrade_id in completed)
    ]


def ensure_mailbox_rows(
    session: Any, provision: Provision, domains: list[Domain], per_domain: int
) -> list[str]:
    """Add the missing mailbox rows of ``domains`` (the sender-name patterns); return every address."""
    patterns = provision.username_patterns[:per_domain]
    try:
        # The wizard's own renderer (core/mailboxes.py): what was previewed is what is created.
        usernames = usernames_for(patterns, provision.sender_first_name, provision.sender_last_name)
    except MailboxNameError as exc:
        raise ProvisioningBlockedError(
            f"mailbox names of provision {provision.id}: {exc}",
            student_message=f"Your mailbox addresses cannot be created: {exc}",
            remedy="support",
        ) from exc
    addresses = []
    for domain in domains:
        existing = {m.address for m in domain.mailboxes}
        for username in usernames:
            address = f"{username}@{domain.name}"
            addresses.append(address)
            if address not in existing:
                session.add(
                    Mailbox(
                        domain=domain,
                        address=address,
                        username=username,
                        first_name=provision.sender_first_name,
                        last_name=provision.sender_last_name,
                    )
                )
    return addresses


def successor_mailbox_rows(
    session: Any, provision: Provision, old: Domain, new: Domain
) -> list[str]:
    """Add the missing rows of ``new``: the old domain's usernames and sender names; all addresses.

    The same senders on the new domain, so the student's campaigns keep their names. An old
    domain without mailbox rows (never expected) falls back to the provision's patterns.
    """
    senders = sorted(old.mailboxes, key=lambda m: m.id)
    if not senders:
        return ensure_mailbox_rows(session, provision, [new], provision.tier.mailboxes_per_domain)
    existing = {m.address for m in new.mailboxes}
    addresses = []
    for box in senders:
        address = f"{box.username}@{new.name}"
        addresses.append(address)
        if address not in existing:
            session.add(
                Mailbox(
                    domain=new,
                    address=address,
                    username=box.username,
                    first_name=box.first_name,
                    last_name=box.last_name,
                )
            )
    return addresses
