"""A domain replacement's live progress: the page, and the progress.json it polls.

The document has the shape of the provisioning progress (portal/progress.py), so the page is
polled and redrawn by the same script (portal/static/app.js); the steps are the replacement's
mirror rows (``replacement-<id>:<step>``, core/pipeline.py), written by the replace-domain flow.
"""

from __future__ import annotations

import hashlib
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import pipeline
from core.db import utcnow
from core.models import DomainReplacement
from core.models import ProvisioningStep
from core.models import ReplacementStatus
from core.models import StepStatus
from core.pipeline import REPLACEMENT_STEPS
from core.pipeline import replacement_step_key
from portal.dashboard import bp
from portal.dashboard.forms import RetryPaymentForm
from portal.dashboard.replace import own_replacement
from portal.db import get_db
from portal.extensions import student_required
from portal.progress import _estimate
from portal.progress import build_steps

STATUS_WORDS = {
    ReplacementStatus.PENDING_PAYMENT.value: "Waiting for the replacement's payment.",
    ReplacementStatus.PROVISIONING.value: "We are setting up your new domain.",
    ReplacementStatus.COMPLETED.value: "Your new domain is ready and warming up; the old one is retired.",
    ReplacementStatus.FAILED.value: "The replacement stopped. Nothing you paid for is lost.",
    ReplacementStatus.CANCELLED.value: "This replacement was cancelled.",
}
NOTE_WORDS = {
    ReplacementStatus.PENDING_PAYMENT.value: "Nothing is bought until the fee is paid; your current domains keep working.",
    ReplacementStatus.PROVISIONING.value: "You can close this page: the replacement continues without you, and your other mailboxes keep warming up.",
    ReplacementStatus.COMPLETED.value: "Your dashboard shows the new domain's mailboxes and their warmup.",
    ReplacementStatus.FAILED.value: "Your other domains keep working; the replacement resumes from the step that stopped once it is fixed.",
}
# Any change to this module or to the step registry gives every page a new version tag.
_CODE_VERSION = hashlib.blake2b(
    Path(__file__).read_bytes() + Path(pipeline.__file__).read_bytes(), digest_size=8
).digest()


def _time_scale() -> float:
    return float(current_app.extensions["settings"].vendor_time_scale)


def load(db: Session, replacement: DomainReplacement) -> tuple[str, dict[str, Any]]:
    """The replacement's step rows by key and their version tag (one query for the steps)."""
    prefix = replacement_step_key(replacement.id, "")
    rows = {
        row.step_key: row
        for row in db.execute(
            select(
                ProvisioningStep.step_key,
                ProvisioningStep.status.label("step_status"),
                ProvisioningStep.attempt,
                ProvisioningStep.started_at,
                ProvisioningStep.finished_at,
                ProvisioningStep.error_message,
                ProvisioningStep.details["waiting"].as_string().label("waiting"),
            )
            .where(
                ProvisioningStep.provision_id == replacement.provision_id,
                ProvisioningStep.step_key.startswith(prefix, autoescape=True),
            )
            .order_by(ProvisioningStep.step_key)
        )
    }
    facts = (
        replacement.status,
        replacement.status_reason,
        replacement.paid_at,
        [tuple(row) for row in rows.values()],
    )
    digest = hashlib.blake2b(_CODE_VERSION, digest_size=12)
    digest.update(pickle.dumps((_time_scale(), replacement.id, facts), protocol=5))
    return digest.hexdigest(), rows


def document(
    replacement: DomainReplacement, rows: dict[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """The progress document of a replacement, shaped like the provisioning one."""
    now = now or utcnow()
    prefix = replacement_step_key(replacement.id, "")
    steps = build_steps(REPLACEMENT_STEPS, rows, now, prefix=prefix, time_scale=_time_scale())
    status = replacement.status
    done = sum(1 for s in steps if s["status"] == StepStatus.COMPLETED.value)
    finished = status == ReplacementStatus.COMPLETED.value
    # Never 100 % before the replacement is complete.
    percent = 100 if finished else min(int(100 * done / len(steps)), 99)
    typical_left, slow_left = _estimate(steps)
    if status != ReplacementStatus.PROVISIONING.value:
        typical_left = slow_left = 0
    failed = next((s for s in steps if s["status"] == StepStatus.FAILED.value), None)
    current = next(
        (s for s in steps if s["status"] in (StepStatus.RUNNING.value, StepStatus.WAITING.value)),
        None,
    )
    paid = replacement.paid_at
    return {
        "replacement_id": replacement.id,
        "status": status,
        "status_words": STATUS_WORDS.get(status, status),
        "note": NOTE_WORDS.get(status, ""),
        "status_reason": replacement.status_reason,
        "remedy": None,
        "percent": percent,
        "done": done,
        "total": len(steps),
        "elapsed_s": int((now - paid).total_seconds()) if paid else None,
        "remaining_s": typical_left,
        "remaining_slow_s": slow_left,
        "current": current["title"] if current else None,
        "failed_step": failed["title"] if failed else None,
        "failed_message": failed["message"] if failed else None,
        "steps": steps,
        "upgrade_steps": None,
        "finished": finished,
    }


@bp.get("/dashboard/replacements/<int:replacement_id>")
@student_required
def replacement(replacement_id: int) -> ResponseReturnValue:
    """Live progress of one replacement of the student's (the page polls its progress.json)."""
    row = own_replacement(replacement_id)
    _version, rows = load(get_db(), row)
    return render_template(
        "dashboard/replacement.html",
        replacement=row,
        progress=document(row, rows),
        retry_form=RetryPaymentForm(),
    )


@bp.get("/dashboard/replacements/<int:replacement_id>/progress.json")
@student_required
def replacement_json(replacement_id: int) -> ResponseReturnValue:
    """The replacement's progress document (polled every 3 s; 304 while nothing changed)."""
    row = own_replacement(replacement_id)
    version, rows = load(get_db(), row)
    if request.if_none_match.contains_weak(version):
        response = current_app.response_class(status=304)
    else:
        response = jsonify(document(row, rows))
    response.set_etag(version, weak=True)
    return response
