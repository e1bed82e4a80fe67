"""One temporary Prefect API for the whole test session, shared by tests/portal and tests/e2e.

Started lazily by the first test that needs it (about 10-15 s), stopped when pytest exits.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

import pytest

_STATE: dict[str, Any] = {}


def start(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Start the harness once, register the stand-in deployments, return the API URL."""
    if "url" in _STATE:
        return str(_STATE["url"])
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from tests.portal.standin_flows import STANDINS

    stack = contextlib.ExitStack()
    stack.enter_context(
        temporary_settings(
            {
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results"),
                PREFECT_SERVER_ANALYTICS_ENABLED: False,
            }
        )
    )
    try:
        stack.enter_context(prefect_test_harness(server_startup_timeout=60))
        for standin in STANDINS:
            standin.to_deployment(name="on-demand").apply()
    except BaseException:
        stack.close()
        raise
    config.add_cleanup(stack.close)
    _STATE["url"] = PREFECT_API_URL.value()
    return str(_STATE["url"])


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
