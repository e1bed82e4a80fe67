"""The progress page's data: every pipeline step with its state, the steps done and an honest ETA.

Step titles and typical durations come from the one step registry (core/pipeline.py), rescaled to
the clock the vendors run on (``Settings.vendor_time_scale``: 60 in the demo's sandbox).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import pipeline
from core.db import utcnow
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import StepStatus
from core.pipeline import PROVISION_STEPS
from core.pipeline import STEPS
from core.pipeline import UPGRADE_STEPS
from core.pipeline import durations
from core.pipeline import upgrade_step_key

STATUS_WORDS = {
    StepStatus.PENDING.value: "Waiting to start",
    StepStatus.RUNNING.value: "In progress",
    StepStatus.WAITING.value: "Waiting on the provider",
    StepStatus.COMPLETED.value: "Done",
    StepStatus.FAILED.value: "Stopped",
}

PROVISION_WORDS = {
    ProvisionStatus.PENDING_PAYMENT.value: "Waiting for your payment to be confirmed.",
    ProvisionStatus.PROVISIONING.value: "We are setting everything up.",
    ProvisionStatus.ACTIVE.value: "Everything is ready.",
    ProvisionStatus.FAILED.value: "Setup stopped. Nothing you paid for is lost.",
    ProvisionStatus.CANCELLED.value: "This order was cancelled.",
    ProvisionStatus.UPGRADING.value: "Adding the domains of your upgrade.",
    ProvisionStatus.PAST_DUE.value: "Your last payment failed. Update your card in Billing to keep your mailboxes.",
}

# What the student may do meanwhile, said under the bar: only true while setup is under way.
NOTE_WORDS = {
    ProvisionStatus.PENDING_PAYMENT.value: "You can close this page: setup starts by itself once the payment is confirmed.",
    ProvisionStatus.PROVISIONING.value: "You can close this page: setup continues without you, and this page shows where it stands whenever you come back.",
    ProvisionStatus.UPGRADING.value: "You can close this page: the upgrade continues without you, and your current mailboxes keep warming up.",
    ProvisionStatus.ACTIVE.value: "Setup is complete. Your dashboard shows your domains, mailboxes and warmup, and what to do next.",
    ProvisionStatus.FAILED.value: "Nothing is lost: setup resumes from the step that stopped once it is fixed.",
}

REMEDY_WORDS = {
    "another_domain": "One of your domains could not be bought. Your instructor will help you pick another one; nothing else is lost.",
    "refund": "We could not finish your setup, so we will refund you. You do not need to do anything.",
    "capacity": "We are adding mailbox capacity at our provider; your setup continues from the mailboxes once it is there. Nothing is lost.",
    "wallet": "We are topping up our domain registrar account; your setup continues from the domain purchase once it is done. Nothing has been bought or charged yet.",
}


# The provision and its steps in one round trip (LEFT JOIN: a just-paid provision has no step rows
# yet). Built once at import on the tables, not the ORM entities: the endpoint is polled every 3 s
# by every student on the progress page, and the ORM adds nothing to a read of plain columns.
_provisions = Provision.__table__
_steps = ProvisioningStep.__table__
PROGRESS_QUERY = (
    select(
        _provisions.c.id,
        _provisions.c.status,
        _provisions.c.status_reason,
        _provisions.c.remedy,
        _provisions.c.paid_at,
        _steps.c.step_key,
        _steps.c.status.label("step_status"),
        _steps.c.attempt,
        _steps.c.started_at,
        _steps.c.finished_at,
        _steps.c.error_message,
        # Only the "waiting" note is shown: read it in SQL instead of decoding every step's JSON,
        # and so a bump of the wait counter next to it does not change the version.
        _steps.c.details["waiting"].as_string().label("waiting"),
    )
    .select_from(_provisions.outerjoin(_steps, _steps.c.provision_id == _provisions.c.id))
    .where(_provisions.c.user_id == bindparam("user_id"))
    # A stable row order keeps the version stable while nothing changes.
    .order_by(_steps.c.step_key)
)

# Any change to this module (wording, the document's shape) or to the step registry (titles,
# durations, pipelines) must invalidate every version handed out before the deploy: old tags
# must not earn a 304.
_CODE_VERSION = hashlib.blake2b(
    Path(__file__).read_bytes() + Path(pipeline.__file__).read_bytes(), digest_size=8
).digest()


def code_version() -> bytes:
    """What of this release every version covers (its wording, shapes and step registry)."""
    return _CODE_VERSION


@dataclass(frozen=True)
class Snapshot:
    """A student's provision and step rows as read in one query, with their version tag."""

    version: str
    provision: Any
    rows: dict[str, Any]
    time_scale: float = 1.0


def load_snapshot(db: Session, user_id: int, time_scale: float = 1.0) -> Snapshot | None:
    """Read a student's provision and steps in one query; None if they have no provision.

    ``time_scale`` is how much faster than real time the vendors' clock runs (estimates follow it).
    """
    result = db.connection().execute(PROGRESS_QUERY, {"user_id": user_id}).all()
    if not result:
        return None
    # The version covers every column the document is built from, so any change to a step (or
    # to the provision) gives a new tag on the next poll. Only the clock is left out: the page
    # advances the durations itself while the tag holds (portal/static/app.js).
    # pickle, not repr: a faithful encoding of the values (types included) at a fifth of the cost.
    values = [tuple(row) for row in result]
    digest = hashlib.blake2b(_CODE_VERSION + user_id.to_bytes(8, "big"), digest_size=12)
    # The scale changes every estimate: a restart with another one must not earn a 304.
    digest.update(pickle.dumps((time_scale, values), protocol=5))
    rows = {row.step_key: row for row in result if row.step_key is not None}
    return Snapshot(digest.hexdigest(), result[0], rows, time_scale)


def _estimate(steps: list[dict[str, Any]]) -> tuple[int, int]:
    """Return (typical seconds left, slow-case seconds left) over unfinished steps."""
    typical = slow = 0
    for step in steps:
        if step["status"] == StepStatus.COMPLETED.value:
            continue
        spent = step["elapsed_s"] or 0
        typical += max(step["typical_s"] - spent, int(step["typical_s"] * 0.1))
        slow += max(step["slow_s"] - spent, int(step["slow_s"] * 0.1))
    return typical, slow


def build_steps(
    keys: tuple[str, ...],
    rows: dict[str, Any],
    now: datetime,
    prefix: str = "",
    time_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Merge the mirror rows into the full step list (steps not started yet show as pending)."""
    steps = []
    for key in keys:
        row = rows.get(prefix + key)
        info = STEPS[key]
        typical_s, slow_s = durations(key, time_scale)
        status = row.step_status if row else StepStatus.PENDING.value
        started = row.started_at if row else None
        finished = row.finished_at if row else None
        elapsed = None
        if started is not None:
            elapsed = int(((finished or now) - started).total_seconds())
        steps.append(
            {
                "key": key,
                "title": info.title,
                "description": info.description,
                "status": status,
                "status_words": STATUS_WORDS.get(status, status),
                "attempt": row.attempt if row else 0,
                "elapsed_s": elapsed,
                "typical_s": typical_s,
                "slow_s": slow_s,
                "slow": status in (StepStatus.RUNNING.value, StepStatus.WAITING.value)
                and elapsed is not None
                and elapsed > slow_s,
                # Still counting: the page advances elapsed_s itself after a 304.
                "counting": started is not None and finished is None,
                "message": row.error_message if row else None,
                "waiting": row.waiting if row else None,
            }
        )
    return steps


def progress_for_user(db: Session, user_id: int, time_scale: float = 1.0) -> dict[str, Any] | None:
    """Return the progress document for a student's provision, or None if they have none."""
    snapshot = load_snapshot(db, user_id, time_scale)
    return build_document(snapshot) if snapshot is not None else None


def build_document(snapshot: Snapshot, now: datetime | None = None) -> dict[str, Any]:
    """Build the progress document from a snapshot, with durations as of ``now``."""
    provision = snapshot.provision
    rows = snapshot.rows
    now = now or utcnow()
    scale = snapshot.time_scale
    steps = build_steps(PROVISION_STEPS, rows, now, time_scale=scale)
    upgrade_keys = sorted({k.split(":", 1)[0] for k in rows if k.startswith("upgrade-")})
    upgrade = None
    if upgrade_keys and provision.status == ProvisionStatus.UPGRADING.value:
        latest = max(upgrade_keys, key=lambda k: int(k.removeprefix("upgrade-")))
        upgrade_id = int(latest.removeprefix("upgrade-"))
        upgrade = build_steps(
            UPGRADE_STEPS, rows, now, prefix=upgrade_step_key(upgrade_id, ""), time_scale=scale
        )
    tracked = upgrade if upgrade is not None else steps
    done = sum(1 for s in tracked if s["status"] == StepStatus.COMPLETED.value)
    total = len(tracked)
    status = provision.status
    # The bar measures steps, as its label says ("7 of 12 steps done"); time is estimated apart.
    if status == ProvisionStatus.ACTIVE.value:
        percent = 100
    else:
        # Never 100 % before the provision is active.
        percent = min(int(100 * done / total), 99) if total else 0
    typical_left, slow_left = _estimate(tracked)
    failed = next((s for s in tracked if s["status"] == StepStatus.FAILED.value), None)
    current = next(
        (s for s in tracked if s["status"] in (StepStatus.RUNNING.value, StepStatus.WAITING.value)),
        None,
    )
    elapsed = int((now - provision.paid_at).total_seconds()) if provision.paid_at else None
    if status in (
        ProvisionStatus.ACTIVE.value,
        ProvisionStatus.CANCELLED.value,
        ProvisionStatus.FAILED.value,
    ):
        typical_left = slow_left = 0
    return {
        "provision_id": provision.id,
        "status": status,
        "status_words": PROVISION_WORDS.get(status, status),
        "note": NOTE_WORDS.get(status, ""),
        "status_reason": provision.status_reason,
        "remedy": REMEDY_WORDS.get(provision.remedy or ""),
        "percent": percent,
        "done": done,
        "total": total,
        "elapsed_s": elapsed,
        "remaining_s": typical_left,
        "remaining_slow_s": slow_left,
        "current": current["title"] if current else None,
        "failed_step": failed["title"] if failed else None,
        "failed_message": failed["message"] if failed else None,
        "steps": steps,
        "upgrade_steps": upgrade,
        "finished": status == ProvisionStatus.ACTIVE.value,
    }
