"""Failure for good stops before spending; the summary artifact holds ids, never a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from sqlalchemy import select
from sqlalchemy import update

from core.crypto import SecretBox
from core.db import utcnow
from core.models import DomainCheck
from core.models import Notification
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from flows.provision import provision
from tests.factories import make_user
from tests.flows.conftest import Pipeline

pytestmark = pytest.mark.prefect


def step_row(pipeline: Pipeline, provision_id: int, key: str) -> ProvisioningStep:
    return (
        pipeline.session.query(ProvisioningStep)
        .filter_by(provision_id=provision_id, step_key=key)
        .one()
    )


def test_a_domain_taken_before_purchase_stops_before_spending(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision()
    taken = pipeline.session.get(Provision, provision_id).domains[1].name
    pipeline.sandbox.control("POST", "/zapmail/unavailable", json={"names": [taken]})
    # The wizard's answers are older than APP_AVAILABILITY_FRESH_S: the purchase re-checks.
    stale = utcnow() - timedelta(seconds=pipeline.settings.availability_fresh_s + 60)
    pipeline.session.execute(update(DomainCheck).values(checked_at=stale))
    pipeline.session.commit()

    state = provision(provision_id, return_state=True)

    assert state.is_failed()
    assert pipeline.sandbox.ledger(kind="domain_purchase") == []
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert (row.status, row.remedy) == ("failed", "another_domain")
    assert taken in row.status_reason and row.status_reason.startswith("buy_domains")
    step = step_row(pipeline, provision_id, "buy_domains")
    assert step.status == "failed" and taken in step.error_message
    assert "Nothing was charged" in step.error_message


def test_a_short_wallet_stops_before_spending_and_a_retry_after_top_up_succeeds(
    pipeline: Pipeline,
) -> None:
    make_user(pipeline.session, "ops@bootcamp.test", role=Role.ADMIN)
    pipeline.session.commit()
    provision_id = pipeline.paid_provision()
    pipeline.sandbox.control("POST", "/zapmail/wallet", json={"balance": 5.0})

    first = provision(provision_id, return_state=True)

    assert first.is_failed()
    assert pipeline.sandbox.ledger(kind="domain_purchase") == []
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    # The operator tops up (never a refund for our own wallet), told at once with the numbers.
    assert (row.status, row.remedy) == ("failed", "wallet")
    (alert,) = pipeline.session.scalars(
        select(Notification).where(Notification.key.like(f"wallet-stop:{provision_id}:%"))
    ).all()
    assert alert.recipient == "ops@bootcamp.test" and alert.sent_at is not None
    assert "Zapmail wallet: $5; reserved by purchases in flight: $0; this run needs $38.97" in (
        alert.body
    )
    assert "Top the wallet up by at least $33.97" in alert.body
    assert (
        "Nothing has been bought" in step_row(pipeline, provision_id, "buy_domains").error_message
    )

    # The operator tops the wallet up and retries: the run resumes and completes (M5).
    pipeline.sandbox.control("POST", "/zapmail/wallet", json={"balance": 1000.0})
    assert provision(provision_id, return_state=True).is_completed()
    pipeline.session.expire_all()
    assert pipeline.session.get(Provision, provision_id).status == "active"
    assert len(pipeline.sandbox.ledger(kind="domain_purchase")) == 3


def test_the_summary_artifact_lists_resources_without_secrets(pipeline: Pipeline) -> None:
    provision_id = pipeline.paid_provision()
    provision(provision_id)

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"provision-{provision_id}"])
            )
        )
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    for domain in row.domains:
        assert domain.name in artifact.data
        assert all(m.address in artifact.data for m in domain.mailboxes)
    assert row.zapmail_workspace_id in artifact.data
    password = SecretBox.from_settings(pipeline.settings).open(row.plusvibe_client_password_enc)
    assert password.get_secret_value() not in artifact.data


def test_mailbox_slots_used_up_stops_with_plain_words_then_one_retry_finishes(
    pipeline: Pipeline,
) -> None:
    from collections import Counter

    # The operator account has bought 4 mailbox slots; a Starter order needs 6.
    pipeline.sandbox.configure(zapmail_mailbox_slots=4)
    provision_id = pipeline.paid_provision()
    first = provision(provision_id, return_state=True)
    assert first.is_failed()
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert (row.status, row.remedy) == ("failed", "capacity")
    assert row.status_reason.startswith("mailboxes:"), row.status_reason
    assert step_row(pipeline, provision_id, "mailboxes").status == "failed"
    assert "mailbox capacity" in step_row(pipeline, provision_id, "mailboxes").error_message
    assert not pipeline.sandbox.ledger(kind="mailbox_created"), "nothing half-created"

    # The operator buys slots and presses Retry: the run resumes at the mailboxes.
    pipeline.sandbox.configure(zapmail_mailbox_slots=100)
    assert provision(provision_id, return_state=True).is_completed()
    created = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_created"))
    assert len(created) == 6 and set(created.values()) == {1}
    purchases = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase"))
    assert set(purchases.values()) == {1}
