"""Whether a step must look before it writes: only when an earlier attempt of it may have written.

Zapmail's 200 calls a minute are shared by every provision in flight, and a look-before-write
listing is a call. A step's first attempt has nothing to find: no earlier attempt of it started,
so none can have sent its write and lost the answer. ``records.step`` commits the step's attempt
counter before the step's body runs, so an attempt that sent anything was counted before it
sent: any later attempt (a task retry, a retried run, a run after a killed worker) reads a
counter above 1 and looks first. Callers read it under the provision's lock after
``ensure_current``: of two attempts racing into one step, only the current run's goes on.
Money never relies on this: purchases keep their own ledger of intents (tasks/purchase.py).
"""

from __future__ import annotations

from sqlalchemy import select

from core.models import ProvisioningStep
from tasks import runtime


def tried_before(provision_id: int, step_key: str) -> bool:
    """Whether the step was attempted before this attempt (whose write may have gone out)."""
    with runtime.db() as session:
        attempt = session.scalar(
            select(ProvisioningStep.attempt).where(
                ProvisioningStep.provision_id == provision_id,
                ProvisioningStep.step_key == step_key,
            )
        )
    # No row, or a counter this attempt did not bump: nothing proves a first attempt.
    return attempt is None or attempt != 1
