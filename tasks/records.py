"""The step mirror: every step's start, finish, wait and failure written to the app DB.

The portal reads only these rows, so what they say must be true at every moment: a step that
will be retried shows "running" with a note, a step that failed for good shows "failed" with
plain words for the student and the technical detail for admins.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

from prefect.context import TaskRunContext
from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy import update

from core.db import utcnow
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import StepStatus
from core.pipeline import base_key
from core.pipeline import failure_words
from tasks import guards
from tasks import runtime
from tasks.errors import PipelineError
from tasks.policies import is_transient

RETRYING_NOTE = "A provider is answering slowly; we retry automatically, nothing to do for you."
FINAL_NOTE = "Our team has been notified and will resume it from this step; you keep everything already set up."
MAX_DETAIL = 2000


def prepare_steps(provision_id: int, keys: Sequence[str]) -> None:
    """Create the missing step rows (pending), in pipeline order."""
    with runtime.db() as session:
        existing = set(
            session.scalars(
                select(ProvisioningStep.step_key).where(
                    ProvisioningStep.provision_id == provision_id
                )
            )
        )
        for position, key in enumerate(keys):
            if key not in existing:
                session.add(
                    ProvisioningStep(provision_id=provision_id, step_key=key, position=position)
                )


def _row(session: Any, provision_id: int, key: str) -> ProvisioningStep:
    row = session.scalar(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == key
        )
    )
    if row is None:
        row = ProvisioningStep(provision_id=provision_id, step_key=key, position=99, attempt=0)
        session.add(row)
    return row


def _retries_remain() -> bool:
    context = TaskRunContext.get()
    if context is None:
        return False
    return context.task_run.run_count <= context.task.retries


def student_message(key: str, exc: BaseException, *, retrying: bool) -> str:
    """Plain words for the student about a failure of step ``key``."""
    if isinstance(exc, PipelineError) and not retrying:
        return exc.student_message
    base = failure_words(key, "A setup step did not complete.")
    return f"{base} {RETRYING_NOTE if retrying else FINAL_NOTE}"


def technical_detail(exc: BaseException) -> str:
    """The admin-facing description of ``exc`` (our clients keep secrets out of messages)."""
    return f"{type(exc).__name__}: {exc}"[:MAX_DETAIL]


@contextmanager
def step(provision_id: int, key: str, *, completes: bool = True) -> Iterator[dict[str, Any]]:
    """Mirror one attempt of a step; yields a dict whose content is saved as the step's details.

    With ``completes=False`` a successful attempt leaves the step running: a wait that follows
    (e.g. for exported accounts to appear) finishes it.
    """
    with runtime.db() as session:
        row = _row(session, provision_id, key)
        row.status = StepStatus.RUNNING.value
        row.attempt += 1
        row.started_at = row.started_at or utcnow()
        row.finished_at = None
        details = dict(row.details or {})
        session.flush()
    try:
        yield details
    except BaseException as exc:
        retrying = is_transient(exc) and _retries_remain()
        with runtime.db() as session:
            row = _row(session, provision_id, key)
            row.status = (StepStatus.RUNNING if retrying else StepStatus.FAILED).value
            row.error_message = student_message(key, exc, retrying=retrying)
            row.error_detail = technical_detail(exc)
            row.details = details
            if not retrying:
                row.finished_at = utcnow()
        raise
    with runtime.db() as session:
        row = _row(session, provision_id, key)
        row.error_message = None
        row.error_detail = None
        row.details = details
        if completes:
            row.status = StepStatus.COMPLETED.value
            row.finished_at = utcnow()


def complete_step(provision_id: int, key: str) -> None:
    """Mark a step completed (a wait that is over)."""
    with runtime.db() as session:
        row = _row(session, provision_id, key)
        row.started_at = row.started_at or utcnow()
        if row.status != StepStatus.COMPLETED:
            row.status = StepStatus.COMPLETED.value
            row.finished_at = utcnow()
            row.error_message = row.error_detail = None
        # The "waiting for ..." note described the wait; once over it would mislead.
        details = dict(row.details or {})
        if details.pop("waiting", None) is not None:
            row.details = details


def mark_waiting(provision_id: int, key: str, *, waiting_for: str, summary: str) -> int:
    """Show the step as waiting on a vendor, record what the run waits for; return the wait count.

    A compare-and-set: only a current run of an order that is not cancelled records a wait
    (the sweeper resumes runs by it). Any other run gets StaleRunError and records nothing.
    """
    with runtime.db() as session:
        recorded = session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.status != ProvisionStatus.CANCELLED.value,
                *guards.claim_is_current(provision_id),
            )
            .values(
                waiting_for=waiting_for,
                # The same wait keeps its start; a new one starts now.
                waiting_since=case(
                    (Provision.waiting_for == waiting_for, Provision.waiting_since),
                    else_=utcnow(),
                ),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if recorded != 1:
            raise guards.StaleRunError(
                f"provision {provision_id} was cancelled or claimed by another run; "
                "no wait is recorded"
            )
        row = _row(session, provision_id, key)
        row.status = StepStatus.WAITING.value
        row.started_at = row.started_at or utcnow()
        count = int((row.details or {}).get("waits", 0)) + 1
        row.details = {**(row.details or {}), "waiting": summary, "waits": count}
        return count


def wait_count(provision_id: int, key: str) -> int:
    """How many times the run has suspended on this wait step so far."""
    with runtime.db() as session:
        details = session.scalar(
            select(ProvisioningStep.details).where(
                ProvisioningStep.provision_id == provision_id, ProvisioningStep.step_key == key
            )
        )
        return int((details or {}).get("waits", 0))


def count_checks(provision_id: int, key: str, checks: int) -> None:
    """Add ``checks`` status polls to the step's tally (benchmarks report them apart)."""
    with runtime.db() as session:
        row = _row(session, provision_id, key)
        row.details = {
            **(row.details or {}),
            "checks": int((row.details or {}).get("checks", 0)) + checks,
        }


def clear_waiting(provision_id: int) -> None:
    """Forget what the provision waited for (its resources are ready)."""
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is not None and provision.waiting_for is not None:
            provision.waiting_for = None
            provision.waiting_since = None


def fail_running_steps(
    provision_id: int, reason: str, keys: Sequence[str] | None = None
) -> str | None:
    """Mark steps left running or waiting (a crash, a cancel) as failed; return the first key.

    ``keys`` limits it to one pipeline's steps (an upgrade's), all of the provision's otherwise.
    """
    first = None
    with runtime.db() as session:
        query = select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id,
            ProvisioningStep.status.in_([StepStatus.RUNNING.value, StepStatus.WAITING.value]),
        )
        if keys is not None:
            query = query.where(ProvisioningStep.step_key.in_(list(keys)))
        rows = session.scalars(query.order_by(ProvisioningStep.position))
        for row in rows:
            first = first or row.step_key
            row.status = StepStatus.FAILED.value
            row.finished_at = utcnow()
            row.error_message = row.error_message or (
                f"{failure_words(row.step_key, 'A setup step stopped.')} {FINAL_NOTE}"
            )
            row.error_detail = row.error_detail or reason[:MAX_DETAIL]
    return first


def first_failed_step(provision_id: int, keys: Sequence[str] | None = None) -> str | None:
    """Return the key of the earliest failed step (among ``keys`` when given), if any."""
    query = select(ProvisioningStep.step_key).where(
        ProvisioningStep.provision_id == provision_id,
        ProvisioningStep.status == StepStatus.FAILED.value,
    )
    if keys is not None:
        query = query.where(ProvisioningStep.step_key.in_(list(keys)))
    with runtime.db() as session:
        return session.scalar(query.order_by(ProvisioningStep.position).limit(1))


def stopped_at(
    provision_id: int,
    reason: str,
    keys: Sequence[str],
    exc: BaseException | None,
    default: str,
) -> tuple[str, str]:
    """Fail the run's running steps among ``keys``; return (the step that stopped, its words).

    The words are the error's own for a refusal that will not pass by retrying, else the step
    registry's failure words (``default`` when no step of ``keys`` had started: "start").
    """
    failed = fail_running_steps(provision_id, reason, keys) or first_failed_step(provision_id, keys)
    step = base_key(failed) if failed else "start"
    if isinstance(exc, PipelineError) and not exc.retryable:
        return step, exc.student_message
    return step, failure_words(step, default)
