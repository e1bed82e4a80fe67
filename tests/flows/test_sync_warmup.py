"""The scheduled warmup sync end to end: the sandbox over HTTP, a real Prefect server, PostgreSQL.

Provisions are set up as a finished provisioning leaves them (seeded at the simulated PlusVibe
through its control plane, mirrored in the app DB), so each test is about the sync itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import flow
from prefect import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter
from prefect.client.schemas.filters import ArtifactCollectionFilterKey
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.states import AwaitingRetry
from prefect.states import Cancelled
from prefect.states import Crashed
from prefect.states import Running
from prefect.states import Suspended
from sqlalchemy import func
from sqlalchemy import select

from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import Tier
from core.models import Upgrade
from core.models import WarmupSnapshot
from deployments.local import PROJECT_ROOT
from flows.sync_warmup import WarmupSyncIncompleteError
from flows.sync_warmup import sync_warmup
from tasks import pacing
from tasks import warmup_sync
from tasks.limits import PLUSVIBE
from tests.factories import DomainFactory
from tests.factories import ProvisionFactory
from tests.flows.conftest import Pipeline
from tests.support.worker import app_env

pytestmark = pytest.mark.prefect
LISTING = "GET /account/list"


def seeded_provision(
    pipeline: Pipeline, name: str, *, warmup_days: float, status: str = "active", boxes: int = 2
) -> int:
    """An active provision whose mailboxes warm up in their own PlusVibe workspace."""
    addresses = [f"sender{i}@{name}.com" for i in range(boxes)]
    response = pipeline.sandbox.control(
        "POST",
        "/plusvibe/seed",
        json={"workspaces": [{"name": name, "emails": addresses, "warmup_days": warmup_days}]},
    )
    response.raise_for_status()
    workspace_id = response.json()["workspaces"][0]["workspace_id"]
    provision = ProvisionFactory(
        session=pipeline.session,
        user__email=f"{name}@student.test",
        status=status,
        plusvibe_workspace_id=workspace_id,
    )
    domain = Domain(
        provision=provision, name=f"{name}.com", status="ACTIVE", purchase_state="purchased"
    )
    for address in addresses:
        user = address.split("@")[0]
        domain.mailboxes.append(
            Mailbox(address=address, username=user, first_name="Tim", last_name="Keen")
        )
    pipeline.session.add(domain)
    pipeline.session.commit()
    return provision.id


def listings(pipeline: Pipeline) -> int:
    routes = pipeline.sandbox.stats()["vendors"].get("plusvibe", {}).get("routes", {})
    return sum(routes.get(LISTING, {}).values())


def mailboxes_of(pipeline: Pipeline, provision_id: int) -> list[Mailbox]:
    pipeline.session.expire_all()
    return list(
        pipeline.session.scalars(
            select(Mailbox).join(Domain).where(Domain.provision_id == provision_id)
        )
    )


def todays_snapshots(pipeline: Pipeline, provision_id: int) -> list[WarmupSnapshot]:
    today = datetime.now(UTC).date()
    return [
        s for box in mailboxes_of(pipeline, provision_id) for s in box.snapshots if s.day == today
    ]


def test_active_provisions_get_todays_snapshot_from_one_listing_per_workspace(
    pipeline: Pipeline,
) -> None:
    young = seeded_provision(pipeline, "youngbrand", warmup_days=2)
    mature = seeded_provision(pipeline, "maturebrand", warmup_days=40)
    cancelled = seeded_provision(pipeline, "gonebrand", warmup_days=40, status="cancelled")
    pipeline.sandbox.control("POST", "/stats/reset")

    summary = sync_warmup(batch_size=1, parallel=2)

    assert listings(pipeline) == 2  # one page per workspace; the cancelled one is not read
    assert (summary["provisions"], summary["snapshots"], summary["failed"]) == (2, 4, [])
    state = pipeline.sandbox.control("GET", "/plusvibe/state").json()
    health = {a["email"]: a["payload"]["analytics"] for a in state["accounts"]}
    for provision_id, label in ((young, "warming"), (mature, "healthy")):
        boxes = mailboxes_of(pipeline, provision_id)
        assert {box.health_label for box in boxes} == {label}
        assert all(box.plusvibe_account_id and box.warmup_enabled for box in boxes)
        for snap in todays_snapshots(pipeline, provision_id):
            vendor = health[snap.mailbox.address]
            assert snap.health == vendor["health_scores"]["7d_overall_warmup_health"]
            assert snap.warmup_sent == vendor["daily_counters"]["warmup_email_sent_today"]
    assert todays_snapshots(pipeline, cancelled) == []
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=["warmup-sync"])
            )
        )
    assert artifact and "| snapshots | 4 |" in artifact[0].data

    # A second run the same day replaces today's rows instead of adding to them.
    again = sync_warmup()
    assert (again["snapshots"], again["labels"]) == (4, 0)
    pipeline.session.expire_all()
    assert pipeline.session.scalar(select(func.count()).select_from(WarmupSnapshot)) == 4
    assert listings(pipeline) == 4


def test_listings_ask_for_each_plusvibe_slot_only_once_it_has_refilled(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(5):
        seeded_provision(pipeline, f"pacedbrand{index}", warmup_days=10)
    pipeline.sandbox.control("POST", "/stats/reset")
    shared = pacing.pacer(PLUSVIBE.name)
    monkeypatch.setattr(shared, "_read_at", None)  # read this server's limit, not a cached pace
    asks: list[tuple[float, float]] = []
    granted: list[bool] = []
    ask = shared._slots.ask

    def timed(name: str) -> bool:
        started = time.monotonic()
        granted.append(ask(name))
        asks.append((started, time.monotonic()))
        return granted[-1]

    monkeypatch.setattr(shared._slots, "ask", timed)

    summary = sync_warmup(batch_size=1, parallel=3)

    assert (summary["workspaces"], summary["failed"]) == (5, [])
    # Three batches list at once, yet none asks Prefect before the last slot has refilled:
    # an early ask is refused (423) and pushes the free slot back by a whole interval.
    assert (granted, listings(pipeline)) == ([True] * 5, 5)
    for (_, returned), (started, _) in zip(asks, asks[1:], strict=False):
        assert started - returned >= 1 / PLUSVIBE.rate
    assert pipeline.sandbox.stats()["vendors"]["plusvibe"]["rate_limited"] == 0


def test_a_5xx_on_one_workspace_does_not_lose_the_others(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warmup_sync, "LISTING_BACKOFF_S", (0.05,))
    down = seeded_provision(pipeline, "downbrand", warmup_days=5)
    flaky = seeded_provision(pipeline, "flakybrand", warmup_days=5)
    fine = seeded_provision(pipeline, "finebrand", warmup_days=5)
    workspace = {p.id: p.plusvibe_workspace_id for p in pipeline.session.scalars(select(Provision))}
    for provision_id, times in ((down, None), (flaky, 1)):
        body = {"workspace_id": workspace[provision_id], "status": 503, "times": times}
        pipeline.sandbox.control("POST", "/plusvibe/fail-workspace", json=body).raise_for_status()

    with pytest.raises(WarmupSyncIncompleteError, match=rf"provisions \[{down}\]"):
        sync_warmup(batch_size=3)

    assert todays_snapshots(pipeline, down) == []
    # The flaky workspace answered on its second try, within the same batch.
    assert len(todays_snapshots(pipeline, flaky)) == 2
    assert len(todays_snapshots(pipeline, fine)) == 2


@flow(name="provision")
def _stand_in(provision_id: int) -> None:
    """Only its name matters: the runs below are created and moved by hand."""


def run_in_state(state: Any) -> str:
    """A flow run on the session's Prefect server, forced into ``state``."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, parameters={"provision_id": 0}, state=Running())
        client.set_flow_run_state(run.id, state, force=True)
        assert client.read_flow_run(run.id).state.type == state.type
    return str(run.id)


def test_runs_that_died_outside_the_portal_are_mirrored_and_waiting_ones_left_alone(
    pipeline: Pipeline,
) -> None:
    runs = {
        "crashed": run_in_state(Crashed(message="worker lost")),
        "cancelled": run_in_state(Cancelled(message="cancelled in the UI")),
        "missing": str(uuid.uuid4()),
        "suspended": run_in_state(Suspended(timeout_seconds=3600)),
        "retrying": run_in_state(AwaitingRetry()),
    }
    ids = {
        name: ProvisionFactory(
            session=pipeline.session,
            user__email=f"{name}@student.test",
            status="provisioning",
            current_flow_run_id=run_id,
        ).id
        for name, run_id in runs.items()
    }
    upgrade_run = run_in_state(Crashed(message="worker lost"))
    upgrading = ProvisionFactory(
        session=pipeline.session,
        user__email="upgrading@student.test",
        status="upgrading",
        current_flow_run_id=upgrade_run,
    )
    tiers = {t.slug: t.id for t in pipeline.session.scalars(select(Tier))}
    upgrade = Upgrade(
        provision=upgrading,
        from_tier_id=tiers["starter"],
        to_tier_id=tiers["growth"],
        status="provisioning",
        flow_run_id=upgrade_run,
    )
    pipeline.session.add(upgrade)
    # A replacement's run crashed too: the replacement fails, the account stays active.
    replacement_run = run_in_state(Crashed(message="worker lost"))
    replacing = ProvisionFactory(
        session=pipeline.session,
        user__email="replacing@student.test",
        status="active",
        current_flow_run_id=replacement_run,
    )
    old = DomainFactory(session=pipeline.session, provision=replacing, purchase_state="purchased")
    new = DomainFactory(session=pipeline.session, provision=replacing)
    replacement = DomainReplacement(
        provision=replacing,
        old_domain=old,
        new_domain=new,
        reason="admin",
        payment="included",
        status="provisioning",
        paid_at=utcnow(),
        flow_run_id=replacement_run,
    )
    pipeline.session.add(replacement)
    pipeline.session.commit()

    summary = sync_warmup()

    assert sorted(summary["reconciled"]["provisions"]) == sorted(
        ids[name] for name in ("crashed", "cancelled", "missing")
    )
    pipeline.session.expire_all()
    status = {name: pipeline.session.get(Provision, pid) for name, pid in ids.items()}
    for name in ("crashed", "cancelled", "missing"):
        assert status[name].status == "failed", name
        assert status[name].status_reason
    assert status["suspended"].status == "provisioning"
    assert status["retrying"].status == "provisioning"
    assert summary["reconciled"]["upgrades"] == [upgrade.id]
    pipeline.session.refresh(upgrade)
    pipeline.session.refresh(upgrading)
    assert (upgrade.status, upgrading.status) == ("failed", "active")
    assert summary["reconciled"]["replacements"] == [replacement.id]
    pipeline.session.refresh(replacement)
    pipeline.session.refresh(replacing)
    assert (replacement.status, replacing.status) == ("failed", "active")
    assert replacement.status_reason.startswith("start:")

    # Already mirrored: the next run changes nothing.
    assert sync_warmup()["reconciled"] == {"provisions": [], "upgrades": [], "replacements": []}


def sync_deployment_spec() -> dict[str, Any]:
    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    (entry,) = [
        d for d in spec["deployments"] if d["entrypoint"] == "flows/sync_warmup.py:sync_warmup"
    ]
    return entry


def test_prefect_yaml_schedules_the_sync_every_15_minutes_without_overlap() -> None:
    entry = sync_deployment_spec()
    assert entry["name"] == "every-15-minutes"
    assert [s["interval"] for s in entry["schedules"]] == [900]
    assert entry["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_the_deployed_sync_has_that_schedule_and_limit(
    pipeline: Pipeline, prefect_api: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **app_env(pipeline.settings),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "APP_DIR": str(PROJECT_ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "deployments.setup"], cwd=PROJECT_ROOT, env=env, check=True
    )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sync-warmup/every-15-minutes")
    (schedule,) = deployment.schedules
    assert schedule.active
    assert schedule.schedule.interval == timedelta(minutes=15)
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options is not None
    assert deployment.concurrency_options.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW
