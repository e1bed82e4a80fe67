"""Failure for good stops before spending; the summary artifact; no secret leaves the vault."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.filters import FlowRunFilterName
from prefect.client.schemas.filters import LogFilter
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.engine import make_url

from core.crypto import SecretBox
from core.db import utcnow
from core.models import DomainCheck
from core.models import Provision
from core.models import ProvisioningStep
from core.settings import SANDBOX_KEYS
from flows.provision import provision
from tasks import runtime
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
    provision_id = pipeline.paid_provision()
    pipeline.sandbox.control("POST", "/zapmail/wallet", json={"balance": 5.0})

    first = provision(provision_id, return_state=True)

    assert first.is_failed()
    assert pipeline.sandbox.ledger(kind="domain_purchase") == []
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert (row.status, row.remedy) == ("failed", "refund")
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


def test_no_secret_reaches_prefect_or_the_app_db_in_plaintext(
    pipeline: Pipeline, db_url: str
) -> None:
    """After full runs: scan Prefect's DB, its result files and logs, and the app DB."""
    provision_id = pipeline.paid_provision()
    provision(provision_id)
    with runtime.db() as session:
        token = session.get(Provision, provision_id).plusvibe_client_password_enc
    password = SecretBox.from_settings(pipeline.settings).open(token)
    secrets = {
        "plusvibe client password": password.get_secret_value(),
        **{f"{name} key": value for name, value in SANDBOX_KEYS.items()},
    }

    haystacks: dict[str, str] = {}
    # Prefect's database: every row of every table (flow run parameters, states, logs, artifacts).
    prefect_db = make_url(db_url).set(
        drivername="postgresql", database=f"{make_url(db_url).database}_prefect"
    )
    with psycopg.connect(prefect_db.render_as_string(hide_password=False)) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]
        for table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608
            haystacks[f"prefect db {table}"] = "\n".join(r[0] for r in rows)
    # Result storage: the persisted task results and cache records.
    storage = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())
    for path in storage.rglob("*"):
        if path.is_file():
            haystacks[f"result {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    # Logs as the API serves them, and the run's parameters.
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter())
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"provision-{provision_id}"))
        )
    haystacks["logs"] = "\n".join(log.message for log in logs)
    haystacks["parameters"] = "\n".join(str(run.parameters) for run in runs)
    # The app DB, every table as text.
    with pipeline.session.connection() as conn:
        for table in (
            "provisions",
            "provisioning_steps",
            "domains",
            "mailboxes",
            "webhook_events",
            "audit_log",
        ):
            rows = conn.execute(text(f"SELECT * FROM {table}")).fetchall()  # noqa: S608
            haystacks[f"app db {table}"] = "\n".join(str(tuple(r)) for r in rows)

    assert runs and logs, "the scan must actually see the run's parameters and logs"
    hits = [
        f"{what} in {where}"
        for where, text_ in haystacks.items()
        for what, secret in secrets.items()
        if secret in text_
    ]
    assert hits == []
