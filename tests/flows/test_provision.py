"""The provisioning flow end to end: real Prefect server, real PostgreSQL, sandbox over HTTP."""

from __future__ import annotations

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from sqlalchemy import select

from core.crypto import SecretBox
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.pipeline import PROVISION_STEPS
from flows.provision import provision
from tasks import purchase
from tasks import runtime
from tasks.errors import ProvisioningBlockedError
from tests.flows.conftest import Pipeline

pytestmark = pytest.mark.prefect


def sandbox_state(pipeline: Pipeline, vendor: str) -> dict:
    return pipeline.sandbox.control("GET", f"/{vendor}/state").json()


def test_happy_path_reaches_active_and_everything_agrees(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision()

    result = provision(provision_id)

    assert result["status"] == "active"
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None
    assert row.status == "active"
    assert row.activated_at is not None

    # Every step mirrored as completed, in pipeline order.
    steps = session.scalars(
        select(ProvisioningStep)
        .where(ProvisioningStep.provision_id == provision_id)
        .order_by(ProvisioningStep.position)
    ).all()
    assert [s.step_key for s in steps] == list(PROVISION_STEPS)
    assert {s.status for s in steps} == {"completed"}

    # Each domain charged exactly once; the right mailboxes created once each.
    domains = session.scalars(select(Domain).where(Domain.provision_id == provision_id)).all()
    names = sorted(d.name for d in domains)
    purchases = pipeline.sandbox.ledger(vendor="zapmail", kind="domain_purchase")
    assert sorted(p["item"] for p in purchases) == names
    mailboxes = session.scalars(
        select(Mailbox).join(Domain).where(Domain.provision_id == provision_id)
    ).all()
    expected = sorted(f"{u}@{n}" for n in names for u in ("tim", "tim.keen"))
    assert sorted(m.address for m in mailboxes) == expected
    created = pipeline.sandbox.ledger(vendor="zapmail", kind="mailbox_created")
    assert sorted(c["item"] for c in created) == expected
    assert all(d.status == "ACTIVE" and d.dmarc_email and d.auto_renew for d in domains)
    # The student's domains keep renewing at Zapmail while they pay (API purchases default off).
    zapmail = runtime.zapmail().for_workspace(row.zapmail_workspace_id)
    assert {d.domain: d.auto_renew for d in zapmail.iter_domains()} == dict.fromkeys(names, True)
    assert all(
        m.status == "ACTIVE" and m.plusvibe_account_id and m.warmup_enabled for m in mailboxes
    )

    # PlusVibe holds the accounts with warmup on, in the student's workspace.
    settings = pipeline.settings
    accounts = httpx.get(
        f"{settings.plusvibe_base_url}/account/list",
        params={"workspace_id": row.plusvibe_workspace_id, "limit": 100},
        headers={"x-api-key": settings.plusvibe_api_key.get_secret_value()},
        timeout=10,
    ).json()["accounts"]
    assert sorted(a["email"] for a in accounts) == expected
    assert {a["warmup_status"] for a in accounts} == {"ACTIVE"}

    # The HeyReach list exists; the PlusVibe password is stored sealed only.
    lists = httpx.post(
        f"{settings.heyreach_base_url}/list/GetAll",
        json={"offset": 0, "limit": 100},
        headers={"X-API-KEY": settings.heyreach_api_key.get_secret_value()},
        timeout=10,
    ).json()
    assert row.heyreach_list_id in [item["id"] for item in lists["items"]]
    assert row.plusvibe_client_password_enc
    password = SecretBox.from_settings(settings).open(row.plusvibe_client_password_enc)
    assert password.get_secret_value() not in row.plusvibe_client_password_enc


def test_rerun_of_an_active_provision_spends_nothing(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision()
    provision(provision_id)
    before = len(pipeline.sandbox.ledger())

    provision(provision_id)

    assert len(pipeline.sandbox.ledger()) == before


def test_refresh_dashboard_writes_todays_snapshot_and_lead_count(pipeline: Pipeline) -> None:
    from datetime import UTC
    from datetime import datetime

    from core.models import WarmupSnapshot
    from flows.refresh_dashboard import refresh_dashboard

    provision_id = pipeline.paid_provision()
    provision(provision_id)
    pipeline.sandbox.advance(3 * 86400)  # three days of warmup at the vendor

    result = refresh_dashboard(provision_id)
    refresh_dashboard(provision_id)  # a rerun updates the same day's row

    assert result["snapshots"] == 6 and result["leads"] == 0
    pipeline.session.expire_all()
    snapshots = pipeline.session.scalars(select(WarmupSnapshot)).all()
    assert len(snapshots) == 6
    assert {s.day for s in snapshots} == {datetime.now(UTC).date()}
    assert all(s.health is not None and s.health > 0 for s in snapshots)
    mailboxes = pipeline.session.scalars(select(Mailbox)).all()
    assert all(m.health_label for m in mailboxes)
    assert pipeline.session.get(Provision, provision_id).heyreach_lead_count == 0
    # Operators see what the refresh read in the Prefect UI.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"refresh-{provision_id}"]))
        )
    assert artifacts and "warmup snapshots written: 6" in artifacts[0].data


def test_a_cancelled_provision_never_spends(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision(email="cancelled@student.test")
    workspace = runtime.zapmail().create_workspace(
        "outbound-cancelled-test", pipeline.settings.zapmail_billing_details
    )
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    row.zapmail_workspace_id, row.status = workspace.id, "cancelled"
    names = sorted(d.name for d in row.domains)
    pipeline.session.commit()

    with pytest.raises(ProvisioningBlockedError, match="cancelled"):
        purchase.buy_domains(provision_id, names, {})

    assert pipeline.sandbox.ledger(vendor="zapmail", kind="domain_purchase") == []
    pipeline.session.expire_all()
    assert {d.purchase_state for d in pipeline.session.get(Provision, provision_id).domains} == {
        "selected"
    }
