"""Waiting for vendor resources without holding a worker process (architecture section 6).

A wait first polls in-process for ``wait_inline_s`` (short waits then cost no round trip;
Zapmail waits check once there, ``QUICK_WAITS`` every few seconds).
After that, a run with a deployment records what it waits for and suspends: its process exits
and the sweeper (or a Zapmail webhook) resumes it once a listing shows the resources ready; the
resumed run replays its cached steps instantly and checks again. A run without a deployment (a
local call, a test) cannot suspend, so it keeps polling until ``wait_timeout_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import suspend_flow_run
from prefect.context import FlowRunContext

from core.db import utcnow
from core.vendor_events import ANNOUNCED_BY
from core.vendor_events import webhooks_flowing
from tasks import records
from tasks import runtime
from tasks.errors import NotReadyError

Check = Callable[[int, list[str]], Any]

# Waits that usually end within the inline window and that no webhook announces: polled every
# few seconds inline instead of once, because suspending costs a resume (a process start that
# replays the run) plus up to a sweep interval. Zapmail's exports to PlusVibe take seconds to
# minutes; checking is a PlusVibe listing (5/s), not Zapmail's scarcer 200/min.
QUICK_WAITS = frozenset({"accounts_connected"})
QUICK_POLL_S = 3.0


def can_suspend() -> bool:
    """Whether the current flow run can suspend (only runs of a deployment can)."""
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def wait_until(
    provision_id: int,
    step_key: str,
    *,
    waiting_for: str,
    check: Check,
    items: list[str],
    summary: str,
) -> None:
    """Return once ``check(provision_id, items)`` is true; poll briefly, then suspend or poll on."""
    settings = runtime.settings()
    suspendable = can_suspend()
    inline_s = settings.wait_inline_s if suspendable else settings.wait_timeout_s
    poll_s = settings.wait_poll_s
    if waiting_for in QUICK_WAITS:
        poll_s = min(poll_s, QUICK_POLL_S)
    if suspendable and _announced_later(provision_id, step_key, waiting_for):
        # Just bought or created: Zapmail takes minutes to hours and says when (webhook), so
        # suspend at once instead of spending a listing of its 200/min; the resumed run checks.
        waits = records.mark_waiting(
            provision_id, step_key, waiting_for=waiting_for, summary=summary
        )
        suspend_flow_run(timeout=int(settings.wait_timeout_s), key=f"{step_key}-{waits}")
        return
    deadline = time.monotonic() + inline_s
    checks = 0
    while True:
        checks += 1
        if check(provision_id, items):
            _done(provision_id, step_key, checks)
            return
        if checks == 1:
            waits = records.mark_waiting(
                provision_id, step_key, waiting_for=waiting_for, summary=summary
            )
        if time.monotonic() + poll_s > deadline:
            break
        time.sleep(poll_s)
    if not suspendable:
        raise NotReadyError(f"{waiting_for} not ready after {settings.wait_timeout_s:.0f}s")
    records.count_checks(provision_id, step_key, checks)
    # A fresh key per wait: Prefect ignores a suspend whose key it has already seen.
    suspend_flow_run(timeout=int(settings.wait_timeout_s), key=f"{step_key}-{waits}")


def _announced_later(provision_id: int, step_key: str, waiting_for: str) -> bool:
    """First time at a wait that Zapmail's (arriving) webhooks will announce the end of."""
    if waiting_for not in ANNOUNCED_BY or records.wait_count(provision_id, step_key):
        return False
    with runtime.db() as session:
        return webhooks_flowing(session, utcnow())


def _done(provision_id: int, step_key: str, checks: int) -> None:
    records.count_checks(provision_id, step_key, checks)
    records.clear_waiting(provision_id)
    records.complete_step(provision_id, step_key)
