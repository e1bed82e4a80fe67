"""The only place the portal talks to Prefect: start deployments, retry and read flow runs.

Every call reaches Prefect through ``settings.prefect_api_url`` and never through an ephemeral
server: without a URL it fails fast with PrefectNotConfiguredError. Starts use
``run_deployment(timeout=0, idempotency_key=...)``, so a repeated start returns the same run;
only the outbox sender starts runs, after the commit that decided them (core/outbox.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from flask import current_app
from flask import has_app_context

PROVISION_DEPLOYMENT = "provision/on-demand"
UPGRADE_DEPLOYMENT = "upgrade/on-demand"
REFRESH_DEPLOYMENT = "refresh-dashboard/on-demand"
CANCEL_DEPLOYMENT = "cancel-provision/on-demand"
# A web request must not hang on Prefect: fail after this many seconds.
REQUEST_TIMEOUT_S = 10.0
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


class OrchestrationError(RuntimeError):
    """Prefect could not do what was asked (unreachable, unknown run, refused transition)."""


class PrefectNotConfiguredError(OrchestrationError):
    """APP_PREFECT_API_URL is not set, so the portal cannot start or retry anything."""


@dataclass(frozen=True)
class RunInfo:
    """What the admin page shows about a flow run."""

    id: str
    state_type: str
    state_name: str
    message: str | None
    deployment_id: str | None
    run_count: int
    start_time: datetime | None
    end_time: datetime | None

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished (completed, failed, cancelled or crashed)."""
        return self.state_type in TERMINAL_STATES


def api_url(url: str | None = None) -> str:
    """Return the Prefect API URL from the app config; raise when it is not configured."""
    if url is None and has_app_context():
        url = current_app.config.get("PREFECT_API_URL")
    if not url:
        raise PrefectNotConfiguredError(
            "APP_PREFECT_API_URL is not set: the portal cannot start provisioning runs"
        )
    return url.rstrip("/")


@contextlib.contextmanager
def _prefect(url: str | None = None) -> Iterator[None]:
    # Imported here: prefect is heavy and only these calls need it.
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED
    from prefect.settings import temporary_settings

    with temporary_settings(
        {
            PREFECT_API_URL: api_url(url),
            PREFECT_SERVER_EPHEMERAL_ENABLED: False,
            PREFECT_API_REQUEST_TIMEOUT: REQUEST_TIMEOUT_S,
        }
    ):
        try:
            yield
        except OrchestrationError:
            raise
        except Exception as exc:  # httpx errors, ObjectNotFound, server errors
            raise OrchestrationError(f"Prefect call failed: {type(exc).__name__}: {exc}") from exc


def start(
    deployment: str,
    parameters: dict[str, Any],
    *,
    idempotency_key: str | None,
    url: str | None = None,
) -> str:
    """Start ``deployment`` with ``parameters``; return the flow run id (the same one on repeats).

    Called by the outbox sender after the commit that decided the start (portal/outbox_sender.py),
    never inside a transaction. ``url`` is the Prefect API URL for callers outside a request.
    """
    from prefect.deployments import run_deployment

    with _prefect(url):
        run = run_deployment(
            deployment,
            parameters=parameters,
            timeout=0,
            idempotency_key=idempotency_key,
            as_subflow=False,
        )
    return str(run.id)


def start_provision(provision_id: int, *, idempotency_key: str) -> str:
    """Deprecated: kept only until portal/fulfilment.py enqueues its start (helper B)."""
    return start(
        PROVISION_DEPLOYMENT, {"provision_id": provision_id}, idempotency_key=idempotency_key
    )


def _info(run: Any) -> RunInfo:
    state = run.state
    return RunInfo(
        id=str(run.id),
        state_type=state.type.value if state else "UNKNOWN",
        state_name=state.name if state else "Unknown",
        message=state.message if state else None,
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        run_count=run.run_count,
        start_time=run.start_time,
        end_time=run.end_time,
    )


def read_run(flow_run_id: str) -> RunInfo:
    """Read a flow run's current state."""
    from prefect import get_client

    with _prefect(), get_client(sync_client=True) as client:
        return _info(client.read_flow_run(UUID(flow_run_id)))


def retry_run(flow_run_id: str) -> RunInfo:
    """Do what the Prefect UI's Retry does: reschedule a finished deployment run as AwaitingRetry.

    The run keeps its id and parameters; its tasks' business-keyed caches make it resume from the
    first unfinished step. Raises OrchestrationError for runs that are still active or that have
    no deployment (nothing could pick them up again).
    """
    from prefect import get_client
    from prefect.states import AwaitingRetry

    with _prefect(), get_client(sync_client=True) as client:
        run = _info(client.read_flow_run(UUID(flow_run_id)))
        if not run.is_terminal:
            raise OrchestrationError(
                f"the run is still {run.state_name.lower()}; wait for it to end"
            )
        if run.deployment_id is None:
            raise OrchestrationError("the run has no deployment, so it cannot be retried")
        result = client.set_flow_run_state(
            UUID(flow_run_id),
            state=AwaitingRetry(message="Retried from the portal admin"),
            force=True,
        )
        if result.status.value != "ACCEPT":
            raise OrchestrationError(f"Prefect refused the retry: {result.details}")
        return _info(client.read_flow_run(UUID(flow_run_id)))


def resume_run(flow_run_id: str) -> bool:
    """Resume a suspended (paused) run early; False when it is not paused."""
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    with _prefect(), get_client(sync_client=True) as client:
        run = _info(client.read_flow_run(UUID(flow_run_id)))
        if run.state_type != "PAUSED":
            return False
    with _prefect():
        resume_flow_run(UUID(flow_run_id))
    return True


def flow_run_url(flow_run_id: str) -> str | None:
    """Link to the run in the Prefect UI (the API URL without ``/api``), or None if unconfigured."""
    try:
        base = api_url()
    except PrefectNotConfiguredError:
        return None
    return f"{base.removesuffix('/api')}/runs/flow-run/{flow_run_id}"
