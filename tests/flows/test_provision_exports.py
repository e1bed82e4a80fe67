"""The export to PlusVibe is decided by the vendors' records: once after a lost answer, again
after a failed export (Zapmail allows 3 exports per mailbox per week)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prefect import flow
from sqlalchemy import select

from core.crypto import SecretBox
from core.models import Mailbox
from core.models import Provision
from flows.provision import provision
from tasks import runtime
from tasks.pipeline import start_provisioning
from tasks.plusvibe import check_accounts_connected
from tasks.plusvibe import ensure_plusvibe_workspace
from tasks.zapmail import EXPORT_APP
from tasks.zapmail import buy_domains
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active
from tasks.zapmail import create_mailboxes
from tasks.zapmail import ensure_zapmail_workspace
from tasks.zapmail import export_to_plusvibe
from tests.flows.conftest import Pipeline

pytestmark = pytest.mark.prefect

EXPORTS = "/v2/exports/mailboxes"


def exports_per_mailbox(pipeline: Pipeline) -> Counter[str]:
    """How many exports Zapmail recorded for each mailbox id."""
    state = pipeline.sandbox.control("GET", "/zapmail/state").json()
    return Counter(box for e in state["exports"] for box in e["mailboxIds"])


def eventually(check: Any, *args: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check(*args):
        assert time.monotonic() < deadline, f"{check.__name__} never became true"
        time.sleep(0.3)


def test_a_lost_export_answer_is_looked_up_never_exported_again(
    pipeline: Pipeline,
    fast_retries: None,  # noqa: ARG001 - the lost answer's retry comes at once
) -> None:
    provision_id = pipeline.paid_provision(email="lostexport@student.test")
    # Zapmail performs the export, then the answer is lost (504 after the effect).
    pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path=EXPORTS, kind="drop_response", hold_s=0.2
    )

    result = provision(provision_id)

    assert result["status"] == "active"
    counts = exports_per_mailbox(pipeline)
    assert len(counts) == 6 and set(counts.values()) == {1}, counts
    routes = pipeline.sandbox.stats()["vendors"]["zapmail"]["routes"]
    assert sum(routes[f"POST {EXPORTS}"].values()) == 1


@flow
def up_to_the_export(provision_id: int) -> list[str]:
    """The provisioning steps before the export, as the provision flow runs them."""
    plan = start_provisioning(provision_id)
    domains, addresses = plan["domains"], plan["addresses"]
    ensure_zapmail_workspace(provision_id)
    buy_domains(provision_id, domains)
    eventually(check_domains_active, provision_id, domains)
    create_mailboxes(provision_id, addresses)
    eventually(check_mailboxes_active, provision_id, addresses)
    ensure_plusvibe_workspace(provision_id)
    return addresses


@flow
def export_run(provision_id: int, addresses: list[str]) -> str | None:
    """One run's export step (each call is a new flow run: a retry from the admin page)."""
    return export_to_plusvibe(provision_id, addresses)


@flow
def connected(provision_id: int, addresses: list[str]) -> bool:
    """Whether PlusVibe lists every mailbox."""
    return check_accounts_connected(provision_id, addresses)


def test_a_failed_export_is_exported_again(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision(email="failedexport@student.test")
    addresses = up_to_the_export(provision_id)
    # The steps wrote the row in their own sessions: read it afresh, not from this identity map.
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None and row.zapmail_workspace_id and row.plusvibe_client_email
    zapmail = runtime.zapmail().for_workspace(row.zapmail_workspace_id)
    # The PlusVibe login is registered at Zapmail, then its password changes at PlusVibe:
    # the login Zapmail holds is stale and the export fails at the vendor.
    sealed = row.plusvibe_client_password_enc
    password = SecretBox.from_settings(pipeline.settings).open(sealed).get_secret_value()
    zapmail.add_third_party_account(row.plusvibe_client_email, password, app=EXPORT_APP)
    new_password = password + "-rotated"
    runtime.plusvibe().set_client_password(row.plusvibe_client_id, new_password)

    first = export_run(provision_id, addresses)

    assert first
    eventually(lambda: zapmail.get_export_status(first).is_failed)
    assert not connected(provision_id, addresses)
    # The operator updates the login at Zapmail; the next attempt must export again.
    account = zapmail.find_third_party_account(row.plusvibe_client_email, app=EXPORT_APP)
    assert account is not None
    httpx.put(
        f"{pipeline.sandbox.zapmail_url}/v2/exports/accounts/third-party",
        json={"accountId": account.id, "password": new_password},
        headers={"x-auth-zapmail": "sandbox-zapmail-key", "x-workspace-key": zapmail.workspace_id},
        timeout=10,
    ).raise_for_status()

    second = export_run(provision_id, addresses)

    assert second and second != first
    eventually(connected, provision_id, addresses)
    pipeline.session.expire_all()
    boxes = pipeline.session.scalars(select(Mailbox).where(Mailbox.address.in_(addresses))).all()
    assert {b.export_id for b in boxes} == {second}
    assert all(b.export_requested_at for b in boxes)
    assert set(exports_per_mailbox(pipeline).values()) == {2}
    # A further attempt finds every account in PlusVibe and exports nothing.
    assert export_run(provision_id, addresses) is None
    assert set(exports_per_mailbox(pipeline).values()) == {2}
