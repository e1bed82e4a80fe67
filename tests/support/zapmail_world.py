"""An active provision whose workspace, domains and mailboxes exist at the Zapmail sandbox.

For tests of what happens after provisioning (the sender profile): the vendor side is made
through the public API (workspace, purchase, mailboxes), the app DB side by the portal helpers,
with the ids linked as a provisioning run would have left them. No Prefect, no PlusVibe.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from clients.zapmail import MailboxSpec
from clients.zapmail import ZapmailClient
from core.models import Provision
from core.settings import Settings
from tests.factories import make_provision
from tests.factories import make_user

USERNAMES = ("tim", "tim.keen")  # what tests.portal.helpers.make_provision names the mailboxes


def active_provision(
    session: Session, settings: Settings, *, email: str, domains: int = 3, timeout_s: float = 30
) -> Provision:
    """Create the student, their active provision and its live Zapmail mailboxes (Tim Keen)."""
    stem = email.split("@")[0].replace(".", "") + "sender"
    with ZapmailClient.from_settings(settings) as client:
        offered = client.check_availability([f"{stem}{i}.com" for i in range(20)])
        names = [row.domain_name for row in offered if row.available][:domains]
        assert len(names) == domains, "the sandbox has too few free names"
        provision = make_provision(session, make_user(session, email), domains=names)
        workspace = client.create_workspace(
            f"outbound-provision-{provision.id}", settings.zapmail_billing_details
        )
        scoped = client.for_workspace(workspace.id)
        scoped.buy_domains(names)
        deadline = time.monotonic() + timeout_s
        while True:
            remote = {d.domain: d for d in scoped.iter_domains()}
            if all(remote.get(n) and remote[n].status == "ACTIVE" for n in names):
                break
            assert time.monotonic() < deadline, "sandbox domains did not become ACTIVE"
            time.sleep(1.0)  # the sandbox enforces Zapmail's 5 requests per second
        scoped.create_mailboxes(
            {
                remote[name].id: [
                    MailboxSpec(
                        first_name="Tim", last_name="Keen", mailbox_username=u, domain_name=name
                    )
                    for u in USERNAMES
                ]
                for name in names
            }
        )
        boxes = {(m.address or "").lower(): m.id for m in scoped.iter_mailboxes()}
    provision.zapmail_workspace_id = workspace.id
    for domain in provision.domains:
        domain.zapmail_domain_id = remote[domain.name].id
        for mailbox in domain.mailboxes:
            mailbox.zapmail_mailbox_id = boxes[mailbox.address]
    session.commit()
    return provision
