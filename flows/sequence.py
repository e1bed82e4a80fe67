"""The shared middle of provisioning and upgrade runs: domains bought to mailboxes warming up.

Both flows walk the same steps in the same order with the same tasks; an upgrade names its steps
with its own mirror keys (``upgrade-<id>:<step>``) and its words say "new". The provisioning run
also creates the student's PlusVibe workspace before the export (an upgrade reuses it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.objects import State
from prefect.flows import Flow

from tasks.forwarding import set_forwarding
from tasks.plusvibe import check_accounts_connected
from tasks.plusvibe import configure_warmup
from tasks.waits import wait_until
from tasks.zapmail import buy_domains
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active
from tasks.zapmail import create_mailboxes
from tasks.zapmail import export_to_plusvibe
from tasks.zapmail import set_dmarc

FailureRecorder = Callable[[int, BaseException | None, str, str], None]
FlowHook = Callable[[Flow[..., Any], FlowRun, State[Any]], None]


def domains_to_warmup(
    provision_id: int,
    domains: list[str],
    addresses: list[str],
    *,
    key: Callable[[str], str] = str,
    new: str = "",
    before_export: Callable[[], Any] | None = None,
) -> None:
    """Buy ``domains``, wait for them, set DMARC and forwarding, create the mailboxes, warm them up.

    ``key`` maps a step to its mirror key; ``new`` ("new " for an upgrade) goes into the words
    the student reads while a wait is suspended.
    """
    buy_domains(provision_id, domains, step_key=key("buy_domains"))
    wait_until(
        provision_id,
        key("wait_domains"),
        waiting_for="domains_active",
        check=check_domains_active,
        items=domains,
        summary=f"Registering your {new}domains and configuring DNS (MX, SPF, DKIM)",
    )
    set_dmarc(provision_id, domains, step_key=key("dmarc"))
    # Completes at once, without a vendor call, when the student gave no website.
    set_forwarding(provision_id, domains, step_key=key("forwarding"))
    create_mailboxes(provision_id, addresses, step_key=key("mailboxes"))
    wait_until(
        provision_id,
        key("wait_mailboxes"),
        waiting_for="mailboxes_active",
        check=check_mailboxes_active,
        items=addresses,
        summary=f"Google is creating your {new}mailboxes",
    )
    if before_export is not None:
        before_export()
    export_to_plusvibe(provision_id, addresses, step_key=key("connect_plusvibe"))
    wait_until(
        provision_id,
        key("connect_plusvibe"),
        waiting_for="accounts_connected",
        check=check_accounts_connected,
        items=addresses,
        summary=f"Connecting your {new}mailboxes to "
        + ("your warmup workspace" if new else "the warmup tool"),
    )
    configure_warmup(provision_id, addresses, step_key=key("warmup"))


def mirror_failure(parameter: str, record: FailureRecorder) -> FlowHook:
    """A flow hook that mirrors a failed, crashed or cancelled run through ``record``."""

    def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
        # Prefect calls hooks with these exact keyword names (the runner does, on a crash).
        record_id = flow_run.parameters.get(parameter)
        if record_id is None:
            return
        exc = state.result(raise_on_failure=False)
        reason = f"run {flow_run.name} {state.type.value.lower()}: {state.message or exc}"
        record(
            int(record_id),
            exc if isinstance(exc, BaseException) else None,
            reason,
            str(flow_run.id),
        )

    on_run_failed.__doc__ = f"Mirror a failed, crashed or cancelled run into its {parameter}."
    return on_run_failed


def mirrored_flow_options(parameter: str, record: FailureRecorder) -> dict[str, Any]:
    """@flow options of a fulfilment run: JSON results, and every way it ends mirrored."""
    hook = mirror_failure(parameter, record)
    return {
        "persist_result": True,
        "result_serializer": "json",
        "on_failure": [hook],
        "on_crashed": [hook],
        "on_cancellation": [hook],
    }
