"""The app DB rows Zapmail tasks work on: a provision's workspace id, domains and mailboxes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from tasks import runtime
from tasks.errors import ProvisioningBlockedError


def workspace_id(provision_id: int) -> str:
    """The provision's Zapmail workspace id; a missing one stops the run for the team to look."""
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None or not provision.zapmail_workspace_id:
            raise ProvisioningBlockedError(
                f"provision {provision_id} has no Zapmail workspace",
                student_message="Your domain workspace is missing; our team has been alerted.",
                remedy="support",
            )
        return provision.zapmail_workspace_id


def provision_domains(session: Any, provision_id: int, names: list[str]) -> list[Domain]:
    """The provision's domain rows named in ``names``."""
    return list(
        session.scalars(
            select(Domain).where(Domain.provision_id == provision_id, Domain.name.in_(names))
        )
    )


def provision_mailboxes(session: Any, provision_id: int, addresses: list[str]) -> list[Mailbox]:
    """The provision's mailbox rows with these ``addresses``."""
    return list(
        session.scalars(
            select(Mailbox)
            .join(Domain)
            .where(Domain.provision_id == provision_id, Mailbox.address.in_(addresses))
        )
    )
