"""portal.orchestration: Prefect only through APP_PREFECT_API_URL; idempotent starts; UI-style retry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from portal import orchestration
from tests.portal import prefect_support


def test_without_a_url_every_call_fails_fast(app: Flask) -> None:
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(orchestration.PrefectNotConfiguredError, match="APP_PREFECT_API_URL"):
            orchestration.start(
                orchestration.PROVISION_DEPLOYMENT, {"provision_id": 1}, idempotency_key="k"
            )
        with pytest.raises(orchestration.PrefectNotConfiguredError):
            orchestration.retry_run("00000000-0000-0000-0000-000000000000")
        # No silent ephemeral server: that would take seconds.
        assert time.monotonic() - started < 1.0
        assert orchestration.flow_run_url("abc") is None


def test_flow_run_url_drops_the_api_suffix(app_factory: Any) -> None:
    app = app_factory(prefect_api_url="http://prefect.internal:4200/api")
    with app.app_context():
        assert orchestration.flow_run_url("r1") == "http://prefect.internal:4200/runs/flow-run/r1"


def test_unreachable_prefect_is_an_orchestration_error(app_factory: Any) -> None:
    app = app_factory(prefect_api_url="http://127.0.0.1:9/api")
    with app.app_context(), pytest.raises(orchestration.OrchestrationError):
        orchestration.start(
            orchestration.REFRESH_DEPLOYMENT, {"provision_id": 1}, idempotency_key=None
        )


@pytest.mark.prefect
def test_starts_are_idempotent_and_carry_ids_only(app_factory: Any, portal_prefect: str) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    with app.app_context():
        start = orchestration.start
        first = start("provision/on-demand", {"provision_id": 41}, idempotency_key="checkout:cs_i")
        again = start("provision/on-demand", {"provision_id": 41}, idempotency_key="checkout:cs_i")
        upgrade = start("upgrade/on-demand", {"upgrade_id": 7}, idempotency_key="upgrade:7")
        cancel = start("cancel-provision/on-demand", {"provision_id": 41}, idempotency_key="c:41")
        info = orchestration.read_run(first)
    assert first == again
    assert info.state_type == "SCHEDULED" and info.deployment_id
    assert prefect_support.read_run(portal_prefect, upgrade).parameters == {"upgrade_id": 7}
    assert prefect_support.read_run(portal_prefect, cancel).parameters == {"provision_id": 41}


@pytest.mark.prefect
def test_retry_run_mimics_the_prefect_ui(app_factory: Any, portal_prefect: str) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    run_id = prefect_support.new_run(portal_prefect, "provision/on-demand", {"provision_id": 5})
    with app.app_context():
        with pytest.raises(orchestration.OrchestrationError, match="still scheduled"):
            orchestration.retry_run(run_id)
        prefect_support.fail_run(portal_prefect, run_id)
        info = orchestration.retry_run(run_id)
    assert (info.id, info.state_type, info.state_name) == (run_id, "SCHEDULED", "AwaitingRetry")


@pytest.mark.prefect
def test_resume_run_ignores_runs_that_are_not_paused(app_factory: Any, portal_prefect: str) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    run_id = prefect_support.new_run(portal_prefect, "provision/on-demand", {"provision_id": 6})
    with app.app_context():
        assert orchestration.resume_run(run_id) is False
