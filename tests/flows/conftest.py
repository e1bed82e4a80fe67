"""Fixtures for flow tests: a real Prefect server, the sandbox, paid provisions to run, a worker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
from prefect.settings import temporary_settings
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import DomainCheck
from core.settings import Settings
from tasks import runtime
from tests.factories import make_paid_provision
from tests.support.worker import running_worker

FAST_SANDBOX = {"domain_activation_s": 1.0, "mailbox_activation_s": 1.0, "export_delay_s": 1.0}


@dataclass
class Pipeline:
    """What a flow test needs: settings in force, the sandbox handle, a DB session."""

    settings: Settings
    sandbox: Any
    session: Session

    def available_names(self, count: int, stem: str) -> list[str]:
        """Return ``count`` names the sandbox says are available (one availability check)."""
        candidates = [f"{stem}{i}.com" for i in range(20)]
        response = httpx.post(
            f"{self.sandbox.zapmail_url}/v2/domains/available-bulk",
            json={"domainNames": candidates},
            headers={"x-auth-zapmail": "sandbox-zapmail-key"},
            timeout=10,
        )
        response.raise_for_status()
        rows = response.json()["data"]["domains"]
        free = [row for row in rows if row["status"] == "AVAILABLE"][:count]
        assert len(free) == count, f"sandbox has too few free names for {stem}"
        # The wizard caches the answers it showed the student; the purchase relies on them
        # while fresh instead of spending the flows' small share of the availability bucket.
        for row in free:
            self.session.add(
                DomainCheck(
                    name=row["domainName"],
                    available=True,
                    price_cents=round(float(row["domainPrice"]) * 100),
                    checked_at=utcnow(),
                )
            )
        self.session.flush()
        return [row["domainName"] for row in free]

    def paid_provision(self, email: str = "tim@student.test", **overrides: Any) -> int:
        """Create a paid (provisioning) provision with available domains; return its id."""
        stem = email.split("@")[0].replace(".", "") + "brand"
        domains = overrides.pop("domains", None) or self.available_names(3, stem)
        provision = make_paid_provision(self.session, email=email, domains=domains, **overrides)
        self.session.commit()
        return provision.id


@pytest.fixture
def fast(session: Session, db_url: str, tmp_path: Path) -> Iterator[Session]:
    """Settings on the test DB without Prefect rate-limit slots (no flow runs here)."""
    settings = Settings(env="test", database_url=db_url, instance_dir=tmp_path, _env_file=None)
    runtime.use_settings(settings)
    runtime.use_prefect_limits(False)
    try:
        yield session
    finally:
        runtime.use_prefect_limits(True)
        runtime.use_settings(None)


@pytest.fixture
def pipeline(
    prefect_api: str,  # noqa: ARG001 - flows need the Prefect server running
    sandbox: Any,
    session: Session,
    db_url: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """Settings for in-process flow runs against the sandbox, with fast vendor lifecycles."""
    sandbox.reset()
    sandbox.configure(**FAST_SANDBOX)
    settings = Settings(
        env="test",
        database_url=db_url,
        sandbox_url=sandbox.url,
        instance_dir=tmp_path,
        wait_poll_s=0.2,
        wait_inline_s=1.0,
        purchase_settle_s=2.0,
        # The sandbox exports in 1 s: a lost export is looked for 3 s, then exported again.
        export_settle_s=3.0,
        vendor_timeout_s=5.0,
        _env_file=None,
    )
    runtime.use_settings(settings)
    # A fresh result store per test: cached steps must come from this test's runs only.
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        yield Pipeline(settings=settings, sandbox=sandbox, session=session)
    runtime.use_settings(None)


PIPELINE_TASKS = (
    "tasks.pipeline:start_provisioning",
    "tasks.pipeline:finish_provisioning",
    "tasks.zapmail:ensure_zapmail_workspace",
    "tasks.zapmail:buy_domains",
    "tasks.zapmail:check_domains_active",
    "tasks.zapmail:set_dmarc",
    "tasks.zapmail:create_mailboxes",
    "tasks.zapmail:check_mailboxes_active",
    "tasks.zapmail:export_to_plusvibe",
    "tasks.plusvibe:ensure_plusvibe_workspace",
    "tasks.plusvibe:check_accounts_connected",
    "tasks.plusvibe:configure_warmup",
    "tasks.heyreach:ensure_heyreach_list",
)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten task backoff to 0.2 s: fault tests are about recovery, not about waiting."""
    import importlib

    for dotted in PIPELINE_TASKS:
        module, name = dotted.split(":")
        task = getattr(importlib.import_module(module), name)
        monkeypatch.setattr(task, "retry_delay_seconds", [0.2] * max(task.retries, 1))


@pytest.fixture
def fast_limits(pipeline: Pipeline) -> Iterator[None]:
    """Lift vendor pacing for fault tests (the limits themselves are tested elsewhere)."""
    from prefect import get_client

    from tasks.limits import VENDOR_LIMITS
    from tasks.limits import ensure_limits

    pipeline.sandbox.configure(rate_limits_enabled=False)
    with get_client(sync_client=True) as client:
        for vendor in VENDOR_LIMITS:
            client.upsert_global_concurrency_limit_by_name(
                vendor.name, 50, slot_decay_per_second=200.0
            )
    yield
    # Recreate rather than update: an updated limit keeps the burst's occupied and denied slots,
    # and Prefect derives its Retry-After from them.
    with get_client(sync_client=True) as client:
        for vendor in VENDOR_LIMITS:
            client.delete_global_concurrency_limit_by_name(vendor.name)
    ensure_limits()


@pytest.fixture
def worker(pipeline: Pipeline, prefect_api: str, tmp_path: Path) -> Iterator[Any]:
    """A process worker running prefect.yaml's deployments with this test's settings."""
    home = tmp_path / "worker-home"
    home.mkdir()
    with running_worker(prefect_api, pipeline.settings, home, tmp_path / "worker-results") as proc:
        yield proc
