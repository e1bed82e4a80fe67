"""Prefect helpers for the portal tests: stand-in deployments on the session's Prefect server."""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

_STATE: dict[str, Any] = {}


def register_standins() -> None:
    """Register the stand-in deployments once (runs the portal starts stay Scheduled).

    Deployments that prefect.yaml defines are re-registered with the real flows by the tests
    that run a worker (``deployments.setup``), so the same names serve both kinds of test.
    """
    if _STATE.get("registered"):
        return
    from tests.portal.standin_flows import STANDINS

    for standin in STANDINS:
        standin.to_deployment(name="on-demand").apply()
    _STATE["registered"] = True


def _client(api_url: str) -> Any:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import temporary_settings

    @contextlib.contextmanager
    def opened() -> Any:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            yield client

    return opened()


def run_ids(api_url: str, deployment: str) -> set[str]:
    """Ids of every flow run of a deployment ("provision/on-demand")."""
    from prefect.client.schemas.filters import DeploymentFilter
    from prefect.client.schemas.filters import DeploymentFilterId

    with _client(api_url) as client:
        dep = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])), limit=200
        )
    return {str(run.id) for run in runs}


def read_run(api_url: str, run_id: str) -> Any:
    """Read one flow run."""
    with _client(api_url) as client:
        return client.read_flow_run(UUID(run_id))


def fail_run(api_url: str, run_id: str) -> None:
    """Put a run in Failed, as a flow that hit an injected fault would end."""
    from prefect.states import Failed

    with _client(api_url) as client:
        client.set_flow_run_state(UUID(run_id), state=Failed(message="injected fault"), force=True)


def new_run(api_url: str, deployment: str, parameters: dict[str, Any]) -> str:
    """Create a run of a deployment directly (as if the portal had started it)."""
    with _client(api_url) as client:
        dep = client.read_deployment_by_name(deployment)
        run = client.create_flow_run_from_deployment(dep.id, parameters=parameters)
    return str(run.id)
