"""The parity deployments: declared in prefect.yaml, preloaded by the launcher, registered as meant."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import get_client

from core.replacements import REPLACEMENT_DEPLOYMENT
from deployments import launcher
from deployments import setup
from portal.dashboard.dns import DNS_HEALTH_DEPLOYMENT
from portal.dashboard.forwarding import FORWARDING_DEPLOYMENT

# deployment -> its schedule as prefect.yaml writes it (None: started on demand only).
PARITY = {
    FORWARDING_DEPLOYMENT: None,
    REPLACEMENT_DEPLOYMENT: None,
    DNS_HEALTH_DEPLOYMENT: None,
    "dns-health/daily": {"cron": "30 5 * * *", "timezone": "UTC", "slug": "daily"},
    "capacity-snapshot/every-15-minutes": {"interval": 900, "slug": "every-15-minutes"},
}


def _declared() -> dict[str, dict]:
    spec = yaml.safe_load((Path(setup.PROJECT_ROOT) / "prefect.yaml").read_text())
    found = {}
    for entry in spec["deployments"]:
        path, function = entry["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(importlib.import_module(module), function)
        found[f"{flow.name}/{entry['name']}"] = {**entry, "module": module}
    return found


def test_prefect_yaml_declares_each_parity_deployment_and_its_schedule() -> None:
    declared = _declared()
    for name, schedule in PARITY.items():
        assert name in declared, f"prefect.yaml has no deployment {name}"
        schedules = declared[name].get("schedules") or []
        assert schedules == ([schedule] if schedule else []), name
        assert declared[name]["module"] in launcher.PRELOAD, "forked warm, like every flow"
    # The scheduled ones never overlap themselves; a check of every domain must not run twice.
    for name in ("dns-health/daily", "capacity-snapshot/every-15-minutes"):
        assert declared[name]["concurrency_limit"] == {
            "limit": 1,
            "collision_strategy": "CANCEL_NEW",
        }


@pytest.mark.prefect
def test_setup_registers_the_parity_deployments_with_their_schedules(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `prefect deploy` runs as a child process: it reads the server from its environment.
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    setup.ensure_work_pool()
    setup.deploy_all()
    with get_client(sync_client=True) as client:
        daily = client.read_deployment_by_name("dns-health/daily")
        snapshot = client.read_deployment_by_name("capacity-snapshot/every-15-minutes")
        on_demand = [
            client.read_deployment_by_name(n)
            for n in (FORWARDING_DEPLOYMENT, DNS_HEALTH_DEPLOYMENT, REPLACEMENT_DEPLOYMENT)
        ]
    assert [s.schedule.cron for s in daily.schedules] == ["30 5 * * *"]
    assert [s.schedule.interval.total_seconds() for s in snapshot.schedules] == [900.0]
    assert all(d.schedules == [] and d.work_pool_name == setup.WORK_POOL for d in on_demand)
